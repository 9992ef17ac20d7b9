package main

import (
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/internal/kmstest"
)

// kmsd serves within its limits (docs/API.md, "Limits"): a 900 KB header is
// 431, and KMS_MAX_CONNECTIONS caps open connections.
func TestServesWithinItsLimits(t *testing.T) {
	p := startKmsd(t, kmsdEnv(t, "sqlite:"+filepath.Join(t.TempDir(), "kms.db"), "KMS_MAX_CONNECTIONS=2"))
	addr := strings.TrimPrefix(p.url, "http://")
	// Sent raw: net/http's client would report its write broken by the
	// server's close rather than the 431 it was sent.
	status := kmstest.StatusLine(t, addr, "GET /v1/keys HTTP/1.1\r\nHost: kms\r\nAuthorization: Bearer "+adminToken+
		"\r\nX-Padding: "+strings.Repeat("p", 900<<10)+"\r\n\r\n")
	if !strings.Contains(status, " 431 ") {
		t.Errorf("900 KB header: %q, want 431", status)
	}

	var held []net.Conn
	for range 2 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: kms\r\n") // headers never finished
		held = append(held, conn)
	}
	answered := make(chan error, 1)
	go func() {
		hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 2 * time.Minute}
		resp, err := hc.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a third connection was served with KMS_MAX_CONNECTIONS=2 (%v)", err)
	case <-time.After(time.Second): // a short wait can only miss a defect
	}
	held[0].Close()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("after a slot freed: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("still not served a minute after a slot freed")
	}
	held[1].Close()
	p.stop(t)
}
