package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// A secret file must be readable by no one but its owner and kmsd itself.
// systemd's LoadCredential= (packaging/kmsd.service) writes the credential
// root-owned, mode 0400, and grants the service user read through a POSIX
// ACL; stat then shows the ACL mask in the group bits (0440). So the ACL,
// when there is one, is what is checked, not the mode.

// checkSecretFile refuses a file that someone other than its owner or the
// running user may read: "other" with read, or an ACL that lets a group
// (the owning group or a named one), or a named user that is neither the
// owner nor the running user, read it. Without an ACL the mode decides:
// no group or other read bit.
func checkSecretFile(fileVar, file string) error {
	st, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("%s: cannot read the file: %v", fileVar, errors.Unwrap(err))
	}
	acl, err := readACL(file)
	if err != nil {
		return fmt.Errorf("%s: cannot read the ACL of %s: %v", fileVar, file, err)
	}
	if acl == nil {
		if mode := st.Mode().Perm(); mode&0o044 != 0 {
			return fmt.Errorf("%s: %s is readable by group or others (mode %04o); chmod 600 it", fileVar, file, mode)
		}
		return nil
	}
	owner := -1
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		owner = int(sys.Uid)
	}
	if who := acl.othersReading(owner, os.Getuid()); who != "" {
		return fmt.Errorf("%s: %s is readable by %s (POSIX ACL); only its owner and the user kmsd runs as may read it", fileVar, file, who)
	}
	return nil
}

// POSIX ACL entry tags and the read permission, as the kernel encodes
// system.posix_acl_access (include/uapi/linux/posix_acl_xattr.h).
const (
	aclVersion  = 2
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
	aclRead     = 0x04
)

type aclEntry struct {
	tag, perm uint16
	id        uint32
}

type posixACL []aclEntry

// readACL returns the file's access ACL, or nil if it has none (or its
// file system keeps none).
func readACL(file string) (posixACL, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Getxattr(file, "system.posix_acl_access", buf)
		switch {
		case errors.Is(err, unix.ENODATA), errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case errors.Is(err, unix.ERANGE) && len(buf) < 1<<16:
			buf = make([]byte, 2*len(buf))
			continue
		case err != nil:
			return nil, err
		}
		return parseACL(buf[:n])
	}
}

// parseACL decodes the xattr: a little-endian u32 version, then entries
// of u16 tag, u16 permissions, u32 uid or gid.
func parseACL(b []byte) (posixACL, error) {
	if len(b) < 4 || (len(b)-4)%8 != 0 {
		return nil, fmt.Errorf("an ACL of %d bytes is not a whole number of entries", len(b))
	}
	if v := binary.LittleEndian.Uint32(b); v != aclVersion {
		return nil, fmt.Errorf("ACL version %d, want %d", v, aclVersion)
	}
	var acl posixACL
	for b = b[4:]; len(b) > 0; b = b[8:] {
		acl = append(acl, aclEntry{binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]), binary.LittleEndian.Uint32(b[4:])})
	}
	return acl, nil
}

// othersReading names the first one besides the owner and the running user
// that the ACL lets read, or "". Named entries and the owning group are
// limited by the mask (when there is one); "other" is not.
func (acl posixACL) othersReading(owner, self int) string {
	mask := uint16(aclRead)
	for _, e := range acl {
		if e.tag == aclMask {
			mask = e.perm
		}
	}
	for _, e := range acl {
		reads := e.perm&aclRead != 0
		switch e.tag {
		case aclOther:
			if reads {
				return "others"
			}
		case aclGroupObj:
			if reads && mask&aclRead != 0 {
				return "its group"
			}
		case aclGroup:
			if reads && mask&aclRead != 0 {
				return fmt.Sprintf("group %d", e.id)
			}
		case aclUser:
			if reads && mask&aclRead != 0 && int(e.id) != owner && int(e.id) != self {
				return fmt.Sprintf("user %d", e.id)
			}
		}
	}
	return ""
}
