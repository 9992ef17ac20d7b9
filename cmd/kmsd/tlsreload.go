package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloader serves kmsd's certificate to each TLS handshake and replaces
// it when the files change: on SIGHUP (Reload), and at a handshake when
// either file's size or modification time moved (checked at most once per
// checkEvery). Connections already open keep the certificate they shook
// hands with; nothing is dropped. A pair that does not load (a renewal
// half-written: the new certificate, the old key) is logged and the old
// certificate stays until the files are whole.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	checkEvery        time.Duration

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]fileStamp
	checked time.Time
}

// fileStamp tells one version of a file from the next.
type fileStamp struct {
	size    int64
	modTime time.Time
}

func stampOf(path string) fileStamp {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{size: -1}
	}
	return fileStamp{size: st.Size(), modTime: st.ModTime()}
}

// newCertReloader loads the pair once: at start, a bad pair is an error.
func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, log: log, checkEvery: time.Second}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) load() error {
	stamp := [2]fileStamp{stampOf(r.certFile), stampOf(r.keyFile)}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls-cert/tls-key: cannot load %s and %s: %v", r.certFile, r.keyFile, err)
	}
	r.mu.Lock()
	r.cert, r.stamp, r.checked = &cert, stamp, time.Now()
	r.mu.Unlock()
	return nil
}

// Reload reads the files again (SIGHUP). On failure the old certificate stays.
func (r *certReloader) Reload() error {
	if err := r.load(); err != nil {
		r.log.Error("TLS certificate not reloaded; the previous one is still served", "error", err)
		return err
	}
	r.log.Info("TLS certificate reloaded", "cert", r.certFile)
	return nil
}

// GetCertificate is tls.Config.GetCertificate.
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	due := time.Since(r.checked) >= r.checkEvery
	var changed bool
	if due {
		r.checked = time.Now()
		now := [2]fileStamp{stampOf(r.certFile), stampOf(r.keyFile)}
		changed = now != r.stamp
		if changed {
			// Not again at every handshake while the pair stays bad.
			r.stamp = now
		}
	}
	r.mu.Unlock()
	if changed {
		_ = r.Reload()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cert, nil
}
