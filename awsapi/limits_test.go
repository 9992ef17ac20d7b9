package awsapi_test

import (
	"bufio"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A body declared over the limit is refused at once (400
// ValidationException, as AWS answers it), not after net/http has read the
// rest of it: below 256 KiB it would, and a client feeding a byte a second
// would hold the answer back.
func TestOversizedBodyRefusedAtOnce(t *testing.T) {
	s := start(t)
	u, err := url.Parse(s.url)
	if err != nil {
		t.Fatal(err)
	}
	for _, length := range []int{66 << 10, 200 << 10, 1 << 20} {
		conn, err := net.Dial("tcp", u.Host)
		if err != nil {
			t.Fatal(err)
		}
		head := "POST / HTTP/1.1\r\nHost: kms\r\nContent-Type: application/x-amz-json-1.1\r\n" +
			"X-Amz-Target: TrentService.Encrypt\r\nContent-Length: " + strconv.Itoa(length) + "\r\n\r\n"
		if _, err := io.WriteString(conn, head+"{"); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { // the rest of the body, a byte a second
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
		_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		close(done)
		conn.Close()
		if err != nil || !strings.Contains(line, " 400 ") {
			t.Errorf("a body of %d bytes declared: %q, %v; want 400 at once", length, line, err)
		}
	}
}
