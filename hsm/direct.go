package hsm

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// The few PKCS#11 types the direct calls need (pkcs11t.h, LP64 Linux: no
// structure packing).
typedef unsigned long ck_ulong;
typedef struct { unsigned char major, minor; } ck_version;
// CK_FUNCTION_LIST: the version, then the function pointers in the order
// of pkcs11f.h (C_Encrypt is the 31st, C_Decrypt the 35th).
typedef struct { ck_version version; void *fn[68]; } ck_function_list;
typedef ck_ulong (*ck_get_function_list)(ck_function_list **);
typedef ck_ulong (*ck_crypt)(ck_ulong, unsigned char *, ck_ulong, unsigned char *, ck_ulong *);

static void *direct_open(const char *path, ck_function_list **list, ck_ulong *rv) {
	void *h = dlopen(path, RTLD_LAZY);
	if (h == NULL) {
		return NULL;
	}
	ck_get_function_list get = (ck_get_function_list)dlsym(h, "C_GetFunctionList");
	if (get == NULL) {
		dlclose(h);
		return NULL;
	}
	*rv = get(list);
	if (*rv != 0 || *list == NULL) {
		dlclose(h);
		return NULL;
	}
	return h;
}

static ck_ulong direct_crypt(ck_function_list *l, int idx, ck_ulong sh, unsigned char *in, ck_ulong inlen,
		unsigned char *out, ck_ulong *outlen) {
	return ((ck_crypt)l->fn[idx])(sh, in, inlen, out, outlen);
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/miekg/pkcs11"
)

// miekg/pkcs11 sizes every output buffer from the token's answer to a NULL
// buffer. NSS softoken answers that query for AES-GCM encryption with the
// plaintext length (the tag is missing), so the real call then fails with
// CKR_BUFFER_TOO_SMALL (pitfalls item 49). The data path therefore calls
// C_Encrypt and C_Decrypt itself, with buffers sized from the GCM lengths,
// and reads the real length back. The function list is the module's own
// (dlopen of the same path returns the library miekg/pkcs11 loaded), so
// the session handles are the same.
type direct struct {
	lib  unsafe.Pointer
	list *C.ck_function_list
}

// Indexes of CK_FUNCTION_LIST after the version (pkcs11f.h order).
const (
	fnEncrypt = 30
	fnDecrypt = 34
)

func openDirect(module string) (*direct, error) {
	path := C.CString(module)
	defer C.free(unsafe.Pointer(path))
	var list *C.ck_function_list
	var rv C.ck_ulong
	lib := C.direct_open(path, &list, &rv)
	if lib == nil {
		if rv != 0 {
			return nil, fmt.Errorf("hsm: C_GetFunctionList of %s: %s", module, ckrName(uint(rv)))
		}
		return nil, fmt.Errorf("hsm: cannot load PKCS#11 module %s for direct calls", module)
	}
	return &direct{lib: lib, list: list}, nil
}

func (d *direct) close() {
	if d != nil && d.lib != nil {
		C.dlclose(d.lib)
		d.lib = nil
	}
}

// crypt runs the single-part call idx of the operation initialised on sh,
// with an output buffer of size bytes. A token that wants more answers
// CKR_BUFFER_TOO_SMALL with the length it needs, and the operation stays
// active (PKCS#11 v2.40 §5.2): the call is repeated once with that length,
// if it is at most slack bytes more.
func (d *direct) crypt(idx int, sh pkcs11.SessionHandle, in []byte, size, slack int) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		out := make([]byte, max(size, 1)) // never a NULL buffer: that is the size query
		src := in
		if len(src) == 0 {
			src = make([]byte, 1) // a valid pointer, length 0
		}
		n := C.ck_ulong(size)
		rv := C.direct_crypt(d.list, C.int(idx), C.ck_ulong(sh),
			(*C.uchar)(unsafe.Pointer(&src[0])), C.ck_ulong(len(in)),
			(*C.uchar)(unsafe.Pointer(&out[0])), &n)
		runtime.KeepAlive(src)
		runtime.KeepAlive(out)
		switch {
		case rv == pkcs11.CKR_BUFFER_TOO_SMALL && attempt == 0 && !fits(uint64(n), size) && fits(uint64(n), size+slack):
			clear(out)
			size = int(n)
			continue
		case rv != pkcs11.CKR_OK:
			clear(out)
			return nil, pkcs11.Error(rv)
		case !fits(uint64(n), size):
			clear(out)
			return nil, fmt.Errorf("hsm: the token wrote %d bytes into a buffer of %d", uint64(n), size)
		}
		return out[:n], nil
	}
}

// fits reports whether n, a length the token wrote back (a CK_ULONG), is
// at most size. The compare is unsigned: int(n) of an n >= 2^63 is
// negative and would pass a signed one.
func fits(n uint64, size int) bool { return size >= 0 && n <= uint64(size) }

// exactly returns out if it holds want bytes. Otherwise it wipes out,
// which may hold plaintext, and returns nil with the error.
func exactly(out []byte, want int, what string) ([]byte, error) {
	if len(out) == want {
		return out, nil
	}
	clear(out)
	return nil, fmt.Errorf("hsm: %s returned %d bytes, want %d", what, len(out), want)
}

// gcmSeal is C_Encrypt of an initialised AES-GCM encryption: plaintext and
// tag, never trusting the token's size query.
func (p *PKCS11) gcmSeal(sh pkcs11.SessionHandle, plaintext []byte) ([]byte, error) {
	tag := p.cfg.Profile.GCMTagBits / 8
	out, err := p.direct.crypt(fnEncrypt, sh, plaintext, len(plaintext)+tag, 64)
	if err != nil {
		return nil, err
	}
	return exactly(out, len(plaintext)+tag, fmt.Sprintf("AES-GCM of %d bytes", len(plaintext)))
}

// gcmOpen is C_Decrypt of an initialised AES-GCM decryption. The buffer is
// the ciphertext's length, which the plaintext never exceeds (some tokens
// want room for the tag too, before they check it).
func (p *PKCS11) gcmOpen(sh pkcs11.SessionHandle, ciphertext []byte) ([]byte, error) {
	tag := p.cfg.Profile.GCMTagBits / 8
	out, err := p.direct.crypt(fnDecrypt, sh, ciphertext, len(ciphertext), 64)
	if err != nil {
		return nil, err
	}
	return exactly(out, len(ciphertext)-tag, fmt.Sprintf("AES-GCM decryption of %d bytes", len(ciphertext)))
}

// initArgs is Config.InitArgs as a C string, the pReserved of
// CK_C_INITIALIZE_ARGS (NSS softoken reads its configuration from there).
// It lives as long as the PKCS11, so that every C_Initialize (Open and
// each hard reset) passes the same arguments.
type initArgs struct{ s *C.char }

func newInitArgs(s string) *initArgs {
	if s == "" {
		return nil
	}
	return &initArgs{s: C.CString(s)}
}

// options are the arguments of C_Initialize: none without InitArgs.
func (a *initArgs) options() []pkcs11.InitializeOption {
	if a == nil {
		return nil
	}
	return []pkcs11.InitializeOption{pkcs11.InitializeWithReserved(unsafe.Pointer(a.s))}
}

func (a *initArgs) free() {
	if a != nil && a.s != nil {
		C.free(unsafe.Pointer(a.s))
		a.s = nil
	}
}
