package service_test

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/hsmkms/hsmkms/internal/kmstest"
	"github.com/hsmkms/hsmkms/service"
)

// TagKey changes tags under the key's lock: concurrent changes of one key
// all land, and refused ones change nothing.
func TestTagKey(t *testing.T) {
	s := kmstest.Start(t, kmstest.Options{})
	ctx := kmstest.Ctx(t)
	k, err := s.Service.Keys.CreateKey(ctx, service.CreateKeyInput{Tags: map[string]string{"env": "prod", "old": "x"}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Service.Keys.TagKey(ctx, k.ID, map[string]string{fmt.Sprintf("t%d", i): "v"}, nil)
			if errors.Is(err, service.ErrLimitExceeded) { // busy: retry, as a client would
				_, err = s.Service.Keys.TagKey(ctx, k.ID, map[string]string{fmt.Sprintf("t%d", i): "v"}, nil)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Service.Keys.TagKey(ctx, k.ID, map[string]string{"env": "stage"}, []string{"old", "absent"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"env": "stage"}
	for i := range 8 {
		want[fmt.Sprintf("t%d", i)] = "v"
	}
	if !maps.Equal(got.Tags, want) {
		t.Fatalf("tags after concurrent changes: %v, want %v", got.Tags, want)
	}

	many := map[string]string{}
	for i := range 42 { // 42 new + 9 = 51, one more than allowed
		many[fmt.Sprintf("m%d", i)] = "v"
	}
	for _, tc := range []struct {
		name string
		set  map[string]string
	}{
		{"an empty tag key", map[string]string{"": "v"}},
		{"a tag key too long", map[string]string{strings.Repeat("k", 200): "v"}},
		{"more tags than allowed, counting the key's own", many},
	} {
		if _, err := s.Service.Keys.TagKey(ctx, k.ID, tc.set, nil); !errors.Is(err, service.ErrValidation) {
			t.Errorf("%s: %v, want ValidationException", tc.name, err)
		}
	}
	if _, err := s.Service.Keys.TagKey(ctx, "alias/none", want, nil); !errors.Is(err, service.ErrNotFound) {
		t.Errorf("TagKey of a missing key: %v", err)
	}
	after, err := s.Service.Keys.DescribeKey(ctx, k.ID)
	if err != nil || !maps.Equal(after.Tags, want) {
		t.Fatalf("refused changes changed the tags: %v %v", err, after.Tags)
	}
}
