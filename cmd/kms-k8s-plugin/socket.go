package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"
)

// listenUnix creates the socket at path, readable and writable by this
// user only: whoever can connect can have DEKs decrypted. A socket left by
// a plugin that crashed is replaced; a live one, or anything that is not a
// socket, is refused and left alone.
func listenUnix(path string) (*net.UnixListener, error) {
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("-listen %s exists and is not a socket; not touching it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("-listen %s: another process is serving on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("-listen %s: removing a stale socket: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("-listen: %w", err)
	}
	// The umask makes the socket 0600 from its creation: a chmod after
	// bind would leave a moment in which others may connect. Nothing else
	// runs yet, so changing the process's umask is safe here.
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("-listen: %w", err)
	}
	if st, err := os.Stat(path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("-listen: %w", err)
	} else if st.Mode().Perm() != 0o600 {
		ln.Close()
		return nil, fmt.Errorf("-listen %s: the socket is %v, not 0600", path, st.Mode().Perm())
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}
