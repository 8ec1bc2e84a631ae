package auth

import (
	"errors"
	"strings"
)

// maxTokenLen bounds a presented token: longer ones are refused before
// they are hashed.
const maxTokenLen = 4096

// BearerToken is the token of an Authorization header value: "" when the
// header is empty, an error when it is anything but "Bearer <token>" (the
// scheme in any case, RFC 9110) with a token of visible ASCII. Errors never
// contain the header's value.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", nil
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", errors.New("authorization header: want \"Bearer <token>\"")
	}
	token = strings.TrimLeft(token, " ")
	if token == "" {
		return "", errors.New("authorization header: empty bearer token")
	}
	if len(token) > maxTokenLen {
		return "", errors.New("authorization header: bearer token longer than 4096 bytes")
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c >= 0x7f {
			return "", errors.New("authorization header: bearer token has a character outside visible ASCII")
		}
	}
	return token, nil
}
