package agent

// SaslHandshake (key 17), versions 0-1, as Kafka 4.1 answers it on a
// listener without SASL (PLAINTEXT or SSL): ILLEGAL_SASL_STATE and no
// mechanisms. Floe serves no SASL (see tls.go), but it lists the API as
// Kafka does: a client configured for SASL that does not find it in
// ApiVersions falls back to pre-KIP-43 SASL and sends raw token bytes,
// which are no Kafka request, so the agent closed the connection and the
// client saw only EOF; answered, it fails with Kafka's error.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func (a *Agent) handleSASLHandshake(_ context.Context, _ *request, req *kmsg.SASLHandshakeRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SASLHandshakeResponse)
	resp.ErrorCode = kerr.IllegalSaslState.Code
	return resp, nil
}
