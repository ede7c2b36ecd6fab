package wshub

import "errors"

// Error is an error that the hub reports to a client as an error frame
// (cmd 40) with Code and Reason. A Dispatcher may return one, or wrap one
// with fmt.Errorf("...: %w", err), to answer a frame with a specific code.
type Error struct {
	Code   int    // error code sent in the frame (HTTP-like: 400, 403, 404, ...)
	Reason string // short human-readable reason
}

func (e *Error) Error() string { return "wshub: " + e.Reason }

// Is reports whether target is an *Error with the same Code and Reason, so
// that errors.Is(err, ErrNotMember) holds for an equal error made
// elsewhere (a copy, or one decoded from an error frame), not only for the
// variable itself.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e != nil && t.Code == e.Code && t.Reason == e.Reason
}

// Errors of the hub. Those of type *Error are sent to clients as error
// frames with their code; compare any of them with errors.Is.
var (
	// ErrBadFrame: the frame is not valid JSON, not an object, or has no cmd.
	ErrBadFrame = &Error{Code: 400, Reason: "malformed frame"}
	// ErrMissingDst: the command needs a dstid and the frame has none.
	ErrMissingDst = &Error{Code: 400, Reason: "missing dstid"}
	// ErrBadRequest: the frame's fields do not fit its command.
	ErrBadRequest = &Error{Code: 400, Reason: "bad request"}
	// ErrBadID: a user or room id (a frame's dstid, or an id given to
	// the Hub's methods) is empty, longer than MaxIDLen bytes or not
	// valid UTF-8. A missing target (an empty dstid, an empty to of
	// SendToUser or room of SendToRoom) is ErrMissingDst instead.
	ErrBadID = &Error{Code: 400, Reason: "bad id"}
	// ErrNotMember: a room command from a user who is not a member.
	ErrNotMember = &Error{Code: 403, Reason: "not a member of the room"}
	// ErrForbidden: the application's authorization refused the command.
	ErrForbidden = &Error{Code: 403, Reason: "forbidden"}
	// ErrUnknownCommand: no handler for the frame's cmd.
	ErrUnknownCommand = &Error{Code: 404, Reason: "unknown command"}
	// ErrRateLimited: the connection sends faster than allowed.
	ErrRateLimited = &Error{Code: 429, Reason: "rate limited"}
	// ErrQuota: the user sent more messages than Options.MessageRate and
	// MessageBurst allow, or direct messages to more users than
	// Options.MaxRecipients per RecipientWindow; nothing was stored.
	ErrQuota = &Error{Code: 429, Reason: "quota exceeded"}
	// ErrTooManyRooms: a join would make the user a member of more than
	// Options.MaxRooms rooms; it was not made.
	ErrTooManyRooms = &Error{Code: 429, Reason: "too many rooms"}
	// ErrInternal: the hub failed to handle the frame (a store error);
	// details go to the log, not to the client.
	ErrInternal = &Error{Code: 500, Reason: "internal error"}
	// ErrUnavailable: the hub is shutting down.
	ErrUnavailable = &Error{Code: 503, Reason: "hub is shutting down"}
	// ErrPendingFull: the recipient's pending queue is full, in total or
	// for this sender (store.ErrPendingFull); the message was not stored
	// and gets no receipt. It can be sent again once the recipient took
	// delivery of queued messages.
	ErrPendingFull = &Error{Code: 507, Reason: "the recipient's pending queue is full"}

	// ErrNoAuthenticate: Options.Authenticate is nil; New refuses to
	// build a hub that lets anyone in.
	ErrNoAuthenticate = errors.New("wshub: Options.Authenticate is required")
	// ErrBadOption: New was given options it cannot use (a malformed
	// AllowedOrigins pattern, AllowedOrigins with CheckOrigin).
	ErrBadOption = errors.New("wshub: invalid option")
	// ErrClosed: the hub was shut down.
	ErrClosed = errors.New("wshub: hub is closed")
	// ErrUnauthorized: Authenticate refused the request (HTTP 401).
	ErrUnauthorized = errors.New("wshub: unauthorized")
	// ErrAuthUnavailable, wrapped by an error of Options.Authenticate,
	// says the user could not be authenticated for now (the
	// application's auth backend is down): the hub answers HTTP 503 with
	// Retry-After, and clients try again, where a plain error answers 401
	// and clients give up.
	ErrAuthUnavailable = errors.New("wshub: authentication unavailable")
)
