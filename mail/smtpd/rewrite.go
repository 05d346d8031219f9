package smtpd

// BodyRewriter is an Inbound that also rewrites the message it checked
// before it is queued: mail/policy removes Authentication-Results fields
// that claim this server's name (RFC 8601 5: a sender's forgeries).
// Rewrite runs after Check accepted the message.
type BodyRewriter interface {
	Rewrite(body []byte) []byte
}
