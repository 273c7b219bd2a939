package agent

// SaslAuthenticate (key 36), versions 0-2, as Kafka 4.1 answers it on a
// listener without SASL: ILLEGAL_SASL_STATE with Kafka's message. See
// sasl_handshake.go for why the SASL APIs are listed at all.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (a *Agent) handleSASLAuthenticate(_ context.Context, _ *request, req *kmsg.SASLAuthenticateRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	resp.ErrorCode = kerr.IllegalSaslState.Code
	// Kafka's words: a connection that reaches its request handler has
	// authenticated as far as its listener asks.
	resp.ErrorMessage = kmsg.StringPtr("SaslAuthenticate request received after successful authentication")
	return resp, nil
}
