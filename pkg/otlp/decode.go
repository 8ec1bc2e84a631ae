package otlp

import "github.com/tributary-io/tributary/pkg/reject"

// Request is an OTLP export request of the collector's pdata packages
// (pmetricotlp, plogotlp, ptraceotlp): each decodes both encodings.
type Request interface {
	UnmarshalJSON([]byte) error
	UnmarshalProto([]byte) error
}

// Decode decodes body into req, as OTLP/JSON when isJSON, else protobuf. A
// body that does not decode is a 400 naming what (e.g. "logs").
func Decode(req Request, body []byte, isJSON bool, what string) error {
	var err error
	if isJSON {
		err = req.UnmarshalJSON(body)
	} else {
		err = req.UnmarshalProto(body)
	}
	if err != nil {
		return reject.BadRequest("decode OTLP %s request: %v", what, err)
	}
	return nil
}
