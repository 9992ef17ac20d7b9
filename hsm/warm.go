package hsm

import (
	"context"
	"encoding/binary"

	"github.com/google/uuid"
	"github.com/miekg/pkcs11"
)

// Warm fills the handle cache from one scan of the token, so that the
// first use of each key after a start does not search the token on the
// request path. A search costs in proportion to the objects in the token
// (SoftHSM compares every object), so finding n keys one by one costs
// n² comparisons; one scan costs n. Warm caches exactly what the search
// of the request path would find (search): an ID held by exactly one
// secret key, which, when its name has a nonce and is not an imported
// version's, the token attests it generated (attestRules). Anything else
// (no object, two, an attestation that fails, an ID this service does not
// make) is left to the search on demand, which reports it as before.
// It returns the number of handles cached.
func (p *PKCS11) Warm(ctx context.Context) (int, error) {
	p.mgmt.Lock()
	defer p.mgmt.Unlock()
	_, _, gen := p.current()
	byID := map[string][]pkcs11.ObjectHandle{}
	var refs []ObjectRef
	err := p.do(ctx, func(c *pkcs11.Ctx, sh pkcs11.SessionHandle) error {
		clear(byID)
		refs = refs[:0]
		if err := loggedIn(c, sh); err != nil {
			return err
		}
		p.stats.searches.Add(1)
		if err := c.FindObjectsInit(sh, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY)}); err != nil {
			return err
		}
		var handles []pkcs11.ObjectHandle
		for {
			hs, _, err := c.FindObjects(sh, inventoryBatch)
			if err != nil {
				_ = c.FindObjectsFinal(sh)
				return err
			}
			if len(hs) == 0 {
				break
			}
			handles = append(handles, hs...)
		}
		if err := c.FindObjectsFinal(sh); err != nil {
			return err
		}
		rules := p.attestRules()
		attested := map[pkcs11.ObjectHandle]bool{}
		for _, h := range handles {
			id, good, ok := readWarm(c, sh, h, rules)
			if !ok {
				continue // destroyed meanwhile, or no CKA_ID: not ours
			}
			if _, ok := refFromID(id); !ok {
				continue
			}
			byID[string(id)] = append(byID[string(id)], h)
			attested[h] = good
		}
		for id, hs := range byID {
			ref, _ := refFromID([]byte(id))
			if len(hs) != 1 {
				continue // the search reports the duplicate
			}
			if !ref.Legacy() && !ref.Imported() && !attested[hs[0]] && checkBools(c, sh, hs[0], rules, ref.String()) != nil {
				continue // the search refuses it
			}
			refs = append(refs, ref)
		}
		return nil
	})
	if err != nil {
		return 0, translate("warm the handle cache", err)
	}
	if _, _, now := p.current(); now != gen {
		return 0, nil // a reset during the scan: the handles may be stale
	}
	for _, ref := range refs {
		p.cache(ref, cachedHandle{h: byID[string(ref.ID())][0], gen: gen})
	}
	return len(refs), nil
}

// refFromID is the ObjectRef whose ID is id: a key id, a version and, for
// names made since nonces, the nonce (ObjectRef.ID).
func refFromID(id []byte) (ObjectRef, bool) {
	if len(id) != 20 && len(id) != 20+NonceLen {
		return ObjectRef{}, false
	}
	var r ObjectRef
	r.KeyID = uuid.UUID(id[:16])
	v := binary.BigEndian.Uint32(id[16:20])
	if v < 1 || v > 1<<31-1 {
		return ObjectRef{}, false
	}
	r.Version = int(v)
	if len(id) > 20 {
		r.Nonce = [NonceLen]byte(id[20:])
		if r.Legacy() {
			return ObjectRef{}, false // an all-zero nonce is never made
		}
	}
	return r, string(r.ID()) == string(id)
}

// readWarm reads h's CKA_ID and the attested booleans of rules in one
// C_GetAttributeValue, so that a scan of n objects makes n calls, not n
// times four. attested says the booleans hold; ok is false when h has no
// readable CKA_ID. A token that refuses the whole template (pitfalls item
// 14: one unreadable attribute fails them all) is asked for CKA_ID alone,
// with attested false: the caller then checks the rules one by one, as the
// search does.
func readWarm(c *pkcs11.Ctx, sh pkcs11.SessionHandle, h pkcs11.ObjectHandle, rules []boolRule) (id []byte, attested, ok bool) {
	tmpl := make([]*pkcs11.Attribute, 0, 1+len(rules))
	tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, nil))
	for _, r := range rules {
		tmpl = append(tmpl, pkcs11.NewAttribute(r.attr, nil))
	}
	if a, err := c.GetAttributeValue(sh, h, tmpl); err == nil && len(a) == len(tmpl) {
		return a[0].Value, boolsHold(a[1:], rules), true
	}
	a, err := c.GetAttributeValue(sh, h, tmpl[:1])
	if err != nil || len(a) != 1 {
		return nil, false, false
	}
	return a[0].Value, false, true
}

// boolsHold says whether the values read for rules (in their order) are
// booleans with the wanted values.
func boolsHold(vals []*pkcs11.Attribute, rules []boolRule) bool {
	for i, r := range rules {
		if i >= len(vals) || vals[i].Type != r.attr || len(vals[i].Value) != 1 || (vals[i].Value[0] != 0) != r.want {
			return false
		}
	}
	return true
}
