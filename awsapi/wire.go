package awsapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/hsmkms/hsmkms/internal/strictjson"
)

// epoch is a time on the wire: seconds since 1970 as a JSON number, with
// milliseconds, as AWS's JSON protocols write timestamps.
type epoch time.Time

func (t epoch) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(float64(time.Time(t).UnixMilli())/1000, 'f', -1, 64)), nil
}

func (t *epoch) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return errors.New("a timestamp must be seconds since 1970")
	}
	*t = epoch(time.UnixMilli(int64(math.Round(f * 1000))).UTC())
	return nil
}

func epochPtr(t *time.Time) *epoch {
	if t == nil {
		return nil
	}
	e := epoch(*t)
	return &e
}

// operation is one supported operation: the action its audit record
// carries (the service's authorisation action) and how it runs.
type operation struct {
	action string
	run    func(s *server, c echo.Context, body []byte) ([]byte, error)
	// input is the request type the body is decoded into (its members
	// are checked against the AWS SDK's: TestMembersMatchTheSDK).
	input reflect.Type
}

// op makes an operation from a typed handler: it decodes the body into In
// and encodes Out.
func op[In, Out any](action string, h func(s *server, ctx context.Context, in *In) (*Out, error)) operation {
	return operation{action: action, run: func(s *server, c echo.Context, body []byte) ([]byte, error) {
		in := new(In)
		if err := decode(body, in); err != nil {
			return nil, err
		}
		out, err := h(s, c.Request().Context(), in)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	}, input: reflect.TypeFor[In]()}
}

// decode reads one JSON object strictly (internal/strictjson), as the REST
// API does: member names exactly as AWS spells them (KeyId, not keyid),
// none twice, none the operation does not know. A member hsmkms does not
// know is refused, not ignored: it may be an option (DryRun was one) that
// changes what the request means, and doing the request without it would
// be doing something else than was asked.
func decode(body []byte, v any) error {
	err := strictjson.Unmarshal(body, v)
	var se *strictjson.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	switch se.Kind {
	case strictjson.WrongType:
		return validationf("field %s has the wrong type (binary fields are base64)", clip(se.Field))
	case strictjson.Duplicate:
		return validationf("field %s is given more than once", clip(se.Field))
	case strictjson.Unknown:
		return validationf("unknown field %s (field names are case-sensitive)", clip(se.Field))
	case strictjson.Trailing:
		return validationf("the request body must hold exactly one JSON object")
	}
	return validationf("the request body is not a valid JSON object of this operation")
}

// empty is the answer of operations that return nothing.
type empty struct{}

// symmetricDefault is the one key spec and encryption algorithm.
const symmetricDefault = "SYMMETRIC_DEFAULT"

// checkAlgorithm accepts SYMMETRIC_DEFAULT or nothing.
func checkAlgorithm(field, alg string) error {
	if alg != "" && alg != symmetricDefault {
		return errorsJoin(errKeyUsage, validationf("%s %q is not supported: hsmkms keys are symmetric (SYMMETRIC_DEFAULT)", field, clip(alg)))
	}
	return nil
}

// errorsJoin wraps kind around err, keeping err's message.
func errorsJoin(kind, err error) error { return &kindErr{kind: kind, err: err} }

type kindErr struct{ kind, err error }

func (e *kindErr) Error() string   { return e.err.Error() }
func (e *kindErr) Unwrap() []error { return []error{e.kind, e.err} }
