package strictjson

import (
	"errors"
	"reflect"
	"testing"
)

type item struct {
	KeyID   string            `json:"key_id"`
	Context map[string]string `json:"encryption_context"`
}

type request struct {
	Name  *string `json:"name"`
	Days  *int    `json:"days"`
	Blob  []byte  `json:"blob"`
	Items []item  `json:"items"`
}

func TestUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		body  string
		want  *Error // nil: accepted
		field string // of the accepted value: Name
	}{
		{``, nil, ""},
		{"  \n", nil, ""},
		{`{"name":"a","days":3,"blob":"eA==","items":[{"key_id":"k","encryption_context":{"a":"b"}}]}`, nil, "a"},
		{`{"name":"a","name":"b"}`, &Error{Kind: Duplicate, Field: "name"}, ""},
		{`{"items":[{"encryption_context":{"to":"a","to":"b"}}]}`, &Error{Kind: Duplicate, Field: "items.0.encryption_context.to"}, ""},
		{`{"Name":"a"}`, &Error{Kind: Unknown, Field: "Name"}, ""},
		{`{"NAME":"a"}`, &Error{Kind: Unknown, Field: "NAME"}, ""},
		{`{"items":[{"key_id":"k"},{"Key_Id":"k"}]}`, &Error{Kind: Unknown, Field: "items.1.Key_Id"}, ""},
		{`{"extra":1}`, &Error{Kind: Unknown, Field: "extra"}, ""},
		{`{"days":"3"}`, &Error{Kind: WrongType, Field: "days", Type: "number"}, ""},
		{`{"days":1.5}`, &Error{Kind: WrongType, Field: "days", Type: "number"}, ""},
		{`{"items":{}}`, &Error{Kind: WrongType, Field: "items", Type: "array"}, ""},
		{`{"blob":"!!"}`, &Error{Kind: WrongType, Field: "blob", Type: "string (base64)"}, ""},
		{`[]`, &Error{Kind: NotObject}, ""},
		{`"x"`, &Error{Kind: NotObject}, ""},
		{`{"name":"a"} {}`, &Error{Kind: Trailing}, ""},
		{`{"name":"a"`, &Error{Kind: Malformed}, ""},
		{`{"name":"\xff"}`, &Error{Kind: Malformed}, ""},
		{"{\"name\":\"\xff\"}", &Error{Kind: Malformed}, ""},
	} {
		var v request
		err := Unmarshal([]byte(tc.body), &v)
		if tc.want == nil {
			if err != nil {
				t.Errorf("%q: %v, want accepted", tc.body, err)
			} else if tc.field != "" && (v.Name == nil || *v.Name != tc.field) {
				t.Errorf("%q: name %v, want %q", tc.body, v.Name, tc.field)
			}
			continue
		}
		var e *Error
		if !errors.As(err, &e) || !reflect.DeepEqual(e, tc.want) {
			t.Errorf("%q: %#v, want %#v", tc.body, err, tc.want)
			continue
		}
		if e.Error() == "" {
			t.Errorf("%q: empty message", tc.body)
		}
	}
}
