// Package sigv4 verifies AWS Signature Version 4 on incoming requests
// (Authorization header form), as AWS itself does: the canonical request is
// rebuilt from the headers the client says it signed, the payload hash is
// recomputed from the body, the credential scope must name this server's
// region and service, the request time must be within the allowed skew, and
// the signature is compared in constant time. Looking up the secret is the
// caller's business: Parse checks everything that needs no secret, and
// Signed.Check proves the signature once the secret is known.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Algorithm is the only signing algorithm accepted.
const Algorithm = "AWS4-HMAC-SHA256"

// DefaultSkew is how far a request's time may be from the server's clock
// (AWS allows 5 minutes).
const DefaultSkew = 5 * time.Minute

// Errors of verification, by the AWS exception each becomes.
var (
	// ErrMissingAuthentication: no Authorization header at all
	// (MissingAuthenticationTokenException).
	ErrMissingAuthentication = errors.New("request is missing an AWS Signature Version 4 Authorization header")
	// ErrIncompleteSignature: the header or the signed headers are
	// malformed or incomplete (IncompleteSignatureException).
	ErrIncompleteSignature = errors.New("incomplete signature")
	// ErrInvalidSignature: the signature does not verify, the scope is not
	// this server's, or the request time is outside the allowed skew
	// (InvalidSignatureException).
	ErrInvalidSignature = errors.New("invalid signature")
)

const (
	amzDateFormat = "20060102T150405Z"
	dateFormat    = "20060102"
	scopeTerm     = "aws4_request"
)

// Verifier checks requests signed for one region and service.
type Verifier struct {
	Region  string
	Service string
	// Skew bounds the request's clock offset (default DefaultSkew).
	Skew time.Duration
	// Now is the clock (default time.Now); tests move it.
	Now func() time.Time
	// Required lists headers that must be among the signed ones, besides
	// host and the date header (e.g. x-amz-target: an unsigned target
	// would let a captured request be replayed as another operation).
	Required []string
}

// Signed is a request whose form, scope, time and payload hash passed;
// only the signature remains to be checked, once the secret is known.
type Signed struct {
	// AccessKeyID is the access key the request claims.
	AccessKeyID  string
	stringToSign string
	date         string
	region       string
	service      string
	signature    []byte
}

// Parse checks everything of r that needs no secret, body being its
// complete payload, and returns what Check needs.
func (v *Verifier) Parse(r *http.Request, body []byte) (*Signed, error) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		if r.URL.Query().Get("X-Amz-Algorithm") != "" {
			return nil, fmt.Errorf("%w: query-string (presigned) authentication is not supported; sign the Authorization header", ErrIncompleteSignature)
		}
		return nil, ErrMissingAuthentication
	}
	f, err := parseAuthorization(auth)
	if err != nil {
		return nil, err
	}
	cred := strings.Split(f.credential, "/")
	if len(cred) != 5 || cred[0] == "" {
		return nil, fmt.Errorf("%w: Credential must be ACCESS_KEY_ID/DATE/REGION/SERVICE/aws4_request", ErrIncompleteSignature)
	}
	keyID, date, region, service, term := cred[0], cred[1], cred[2], cred[3], cred[4]
	if term != scopeTerm {
		return nil, fmt.Errorf("%w: credential scope must end in %s", ErrIncompleteSignature, scopeTerm)
	}
	if region != v.Region {
		return nil, fmt.Errorf("%w: credential should be scoped to region %q, not %q", ErrInvalidSignature, v.Region, clip(region))
	}
	if service != v.Service {
		return nil, fmt.Errorf("%w: credential should be scoped to service %q, not %q", ErrInvalidSignature, v.Service, clip(service))
	}

	signed := strings.Split(f.signedHeaders, ";")
	if !sort.StringsAreSorted(signed) {
		return nil, fmt.Errorf("%w: SignedHeaders must be lower case and sorted", ErrIncompleteSignature)
	}
	has := map[string]bool{}
	for _, h := range signed {
		if h == "" || h != strings.ToLower(h) || has[h] {
			return nil, fmt.Errorf("%w: SignedHeaders must be lower case, sorted and distinct", ErrIncompleteSignature)
		}
		has[h] = true
	}

	amzDate, dateHeader := r.Header.Get("X-Amz-Date"), "x-amz-date"
	var at time.Time
	if amzDate != "" {
		at, err = time.Parse(amzDateFormat, amzDate)
	} else if d := r.Header.Get("Date"); d != "" {
		dateHeader = "date"
		at, err = http.ParseTime(d)
		amzDate = at.UTC().Format(amzDateFormat)
	} else {
		return nil, fmt.Errorf("%w: the request needs an X-Amz-Date or a Date header", ErrIncompleteSignature)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: the request's date is malformed", ErrIncompleteSignature)
	}
	for _, h := range append([]string{"host", dateHeader}, v.Required...) {
		if !has[h] {
			return nil, fmt.Errorf("%w: header %s must be signed", ErrIncompleteSignature, h)
		}
	}
	if date != at.UTC().Format(dateFormat) {
		return nil, fmt.Errorf("%w: credential date %q does not match the request date %s", ErrInvalidSignature, clip(date), amzDate)
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	skew := v.Skew
	if skew == 0 {
		skew = DefaultSkew
	}
	if d := now().Sub(at); d > skew || d < -skew {
		return nil, fmt.Errorf("%w: signature expired or not yet valid: request time %s is more than %s from the server's time %s",
			ErrInvalidSignature, amzDate, skew, now().UTC().Format(amzDateFormat))
	}

	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if claimed := r.Header.Get("X-Amz-Content-Sha256"); claimed != "" && claimed != payloadHash {
		return nil, fmt.Errorf("%w: X-Amz-Content-Sha256 does not match the body (unsigned payloads are not accepted)", ErrInvalidSignature)
	}
	sig, err := hex.DecodeString(f.signature)
	if err != nil || len(sig) != sha256.Size {
		return nil, fmt.Errorf("%w: Signature must be 64 hex digits", ErrIncompleteSignature)
	}

	canonical := strings.Join([]string{
		r.Method,
		canonicalURI(r.URL),
		canonicalQuery(r.URL),
		canonicalHeaders(r, signed),
		f.signedHeaders,
		payloadHash,
	}, "\n")
	crSum := sha256.Sum256([]byte(canonical))
	scope := strings.Join([]string{date, region, service, scopeTerm}, "/")
	return &Signed{
		AccessKeyID:  keyID,
		stringToSign: Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crSum[:]),
		date:         date, region: region, service: service,
		signature: sig,
	}, nil
}

// Check proves the signature with the access key's secret, comparing in
// constant time.
func (s *Signed) Check(secret []byte) error {
	k := hmacSHA256(append([]byte("AWS4"), secret...), s.date)
	k = hmacSHA256(k, s.region)
	k = hmacSHA256(k, s.service)
	k = hmacSHA256(k, scopeTerm)
	if !hmac.Equal(hmacSHA256(k, s.stringToSign), s.signature) {
		return fmt.Errorf("%w: the request signature does not match; check the secret access key and the signing method", ErrInvalidSignature)
	}
	return nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// authFields are the three parts of an Authorization header.
type authFields struct{ credential, signedHeaders, signature string }

func parseAuthorization(h string) (authFields, error) {
	var f authFields
	alg, rest, ok := strings.Cut(h, " ")
	if !ok || alg != Algorithm {
		return f, fmt.Errorf("%w: the Authorization header must use %s", ErrIncompleteSignature, Algorithm)
	}
	for _, part := range strings.Split(rest, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return f, fmt.Errorf("%w: malformed Authorization header", ErrIncompleteSignature)
		}
		switch k {
		case "Credential":
			f.credential = val
		case "SignedHeaders":
			f.signedHeaders = val
		case "Signature":
			f.signature = val
		}
	}
	switch {
	case f.credential == "":
		return f, fmt.Errorf("%w: the Authorization header lacks Credential", ErrIncompleteSignature)
	case f.signedHeaders == "":
		return f, fmt.Errorf("%w: the Authorization header lacks SignedHeaders", ErrIncompleteSignature)
	case f.signature == "":
		return f, fmt.Errorf("%w: the Authorization header lacks Signature", ErrIncompleteSignature)
	}
	return f, nil
}

// canonicalURI is the path, each segment URI-encoded again (every service
// but S3 signs the path encoded twice).
func canonicalURI(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i] = uriEncode(s)
	}
	return strings.Join(segs, "/")
}

// canonicalQuery sorts parameters by name, then value, each URI-encoded.
func canonicalQuery(u *url.URL) string {
	q := u.Query()
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, uriEncode(k)+"="+uriEncode(v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

// canonicalHeaders lists each signed header as name:value, values trimmed,
// inner runs of spaces collapsed and repeated headers joined by commas.
func canonicalHeaders(r *http.Request, signed []string) string {
	var b strings.Builder
	for _, name := range signed {
		var vals []string
		switch name {
		case "host":
			vals = []string{r.Host}
		case "content-length":
			vals = r.Header.Values("Content-Length")
			if len(vals) == 0 && r.ContentLength >= 0 {
				vals = []string{fmt.Sprint(r.ContentLength)}
			}
		default:
			vals = append([]string(nil), r.Header.Values(name)...)
		}
		for i, v := range vals {
			vals[i] = strings.Join(strings.Fields(v), " ")
		}
		b.WriteString(name + ":" + strings.Join(vals, ",") + "\n")
	}
	return b.String()
}

// uriEncode encodes every byte but the unreserved characters of RFC 3986.
func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// clip keeps client-supplied text in messages short.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
