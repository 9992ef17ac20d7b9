package api_test

import (
	"reflect"
	"testing"

	"github.com/hsmkms/hsmkms/policy"
	"github.com/hsmkms/hsmkms/wire"
)

// A policy document has one JSON form: policy's, which the server parses,
// and wire's, which it answers with and the client sends.
func TestPolicyDocumentHasOneWireForm(t *testing.T) {
	p, w := reflect.TypeFor[policy.Statement](), reflect.TypeFor[wire.Statement]()
	if p.NumField() != w.NumField() {
		t.Fatalf("policy.Statement has %d fields, wire.Statement %d", p.NumField(), w.NumField())
	}
	for i := range p.NumField() {
		pf, wf := p.Field(i), w.Field(i)
		if pf.Name != wf.Name || pf.Type != wf.Type || pf.Tag.Get("json") != wf.Tag.Get("json") {
			t.Errorf("field %d: policy %s %s %q, wire %s %s %q", i, pf.Name, pf.Type, pf.Tag.Get("json"), wf.Name, wf.Type, wf.Tag.Get("json"))
		}
	}
	if tag := reflect.TypeFor[policy.Document]().Field(0).Tag.Get("json"); tag != reflect.TypeFor[wire.PolicyDocument]().Field(0).Tag.Get("json") {
		t.Errorf("document's statements are %q in policy", tag)
	}
}
