package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hsmkms/hsmkms/api"
	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// Item 11 of issue 16: a flood of requests with a wrong bearer token from
// one address is answered 429 once its burst is spent and leaves a bounded
// number of audit records (a burst of single records, then one counted
// summary per interval whose counts add up to the 429s), while a valid
// client from the same address keeps getting 200.
func TestFailedAuthenticationFloodIsLimited(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	lim := api.AuthLimits{Rate: 2, Burst: 10, SummaryEvery: 300 * time.Millisecond}
	srv := httptest.NewServer(api.New(api.Config{Service: s.Service, Logger: kmstest.Logger(), AuthLimits: lim}))
	t.Cleanup(srv.Close)
	before := deniedRecords(t, s.Service)

	const workers, each = 4, 100
	var mu sync.Mutex
	statuses := map[int]int{}
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/keys", nil)
				req.Header.Set("Authorization", "Bearer wrong-token-"+strconv.Itoa(i))
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				res.Body.Close()
				mu.Lock()
				statuses[res.StatusCode]++
				mu.Unlock()
			}
		}()
	}
	valid := newCaller(t, srv.URL, kmstest.AdminToken)
	for i := 0; i < 30; i++ {
		valid.must(200, "GET", "/v1/keys", nil) // during the flood, from the same address
	}
	wg.Wait()
	elapsed := time.Since(start)
	valid.must(200, "GET", "/v1/keys", nil) // and after it

	allowed401 := lim.Burst + int(lim.Rate*elapsed.Seconds()) + 1
	if statuses[401] > allowed401 || statuses[401] < lim.Burst || statuses[429] == 0 || statuses[401]+statuses[429] != workers*each {
		t.Fatalf("statuses %v in %v; want at most %d answered 401, the rest 429", statuses, elapsed, allowed401)
	}
	// The summaries are written once their interval ends.
	var summarised int
	deadline := time.Now().Add(time.Minute)
	for {
		summarised = 0
		rows, _, err := s.Service.Audit.ListAudit(ctx, service.AuditFilter{Actions: []string{api.ActAuthenticationFailures}, Limit: 1000}, "")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Outcome != service.OutcomeDenied || r.Source == "" {
				t.Fatalf("summary record %+v", r)
			}
			var n int
			d := map[string]string{}
			if err := json.Unmarshal([]byte(r.Detail), &d); err != nil {
				t.Fatal(err)
			}
			n, _ = strconv.Atoi(d["count"])
			summarised += n
		}
		if summarised >= statuses[429] || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if summarised != statuses[429] {
		t.Fatalf("summaries count %d failures, %d were answered 429", summarised, statuses[429])
	}
	records := deniedRecords(t, s.Service) - before
	maxRecords := statuses[401] + int(elapsed/lim.SummaryEvery) + 2
	if records > maxRecords {
		t.Fatalf("%d denied records for %d refused requests, want at most %d", records, workers*each, maxRecords)
	}
	t.Logf("%d requests in %v: %v; %d audit records", workers*each, elapsed, statuses, records)
}

func deniedRecords(t *testing.T, svc *service.Service) int {
	t.Helper()
	n, after := 0, ""
	for {
		rows, next, err := svc.Audit.ListAudit(kmstest.Ctx(t), service.AuditFilter{Limit: 1000}, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.Outcome == service.OutcomeDenied {
				n++
			}
		}
		if next == "" {
			return n
		}
		after = next
	}
}
