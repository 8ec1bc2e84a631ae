// Package reject describes input the gateway refuses: an error that carries
// the HTTP status the client must see (4xx: do not retry) and a one-line
// reason. Decoders return these; the gateway maps them to responses in one
// place.
package reject

import (
	"errors"
	"fmt"
	"net/http"
)

// Error is a refusal of client input.
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return e.Reason }

func newf(status int, format string, args ...any) error {
	return &Error{Status: status, Reason: fmt.Sprintf(format, args...)}
}

// BadRequest (400): the body is malformed or violates a rule.
func BadRequest(format string, args ...any) error {
	return newf(http.StatusBadRequest, format, args...)
}

// TooLarge (413): the body or its decoded form exceeds a limit.
func TooLarge(format string, args ...any) error {
	return newf(http.StatusRequestEntityTooLarge, format, args...)
}

// Unsupported (415): content type or encoding the endpoint does not speak.
func Unsupported(format string, args ...any) error {
	return newf(http.StatusUnsupportedMediaType, format, args...)
}

// Status returns the HTTP status of a refusal, or false if err is not one.
func Status(err error) (int, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Status, true
	}
	return 0, false
}
