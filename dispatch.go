package wshub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/wshub/wshub/store"
)

// Dispatcher handles one decoded frame from a connection.
//
// ctx is the connection's context: it is cancelled when the connection
// closes or the hub shuts down. n is the connection the frame came from;
// n.UserID() is the authenticated sender (the frame's UserID field is
// always overwritten with it before dispatch). A returned error is sent to
// the client as an error frame (cmd 40) carrying the frame's cid: an *Error
// (or an error wrapping one) with its Code, anything else as ErrInternal,
// whose details are logged and not sent. The connection stays open either
// way. Dispatch runs on the goroutine reading the connection: frames of one
// connection are dispatched one at a time, in order. f is the Dispatcher's
// to keep: the hub never reuses a frame that a Dispatcher or Middleware
// of the application was given.
type Dispatcher interface {
	Dispatch(ctx context.Context, n *Node, f *Frame) error
}

// DispatcherFunc adapts a function to the Dispatcher interface.
type DispatcherFunc func(ctx context.Context, n *Node, f *Frame) error

// Dispatch calls fn(ctx, n, f).
func (fn DispatcherFunc) Dispatch(ctx context.Context, n *Node, f *Frame) error {
	return fn(ctx, n, f)
}

// Middleware wraps a Dispatcher: it may inspect, rewrite or veto a frame
// (return an error without calling next) before the built-in router sees
// it. Options.Middleware applies middlewares outermost first.
type Middleware func(next Dispatcher) Dispatcher

// chain wraps d in mws, the first one outermost.
func chain(d Dispatcher, mws []Middleware) Dispatcher {
	for i := len(mws) - 1; i >= 0; i-- {
		d = mws[i](d)
	}
	return d
}

// router is the built-in Dispatcher for the commands of docs/protocol.md.
// Commands from CmdApp up go to Options.Dispatcher.
type router struct{ h *Hub }

func (rt router) Dispatch(ctx context.Context, n *Node, f *Frame) error {
	h := rt.h
	switch f.Cmd {
	case CmdHeart:
		return nil
	case CmdPing:
		return n.Send(&Frame{Cmd: CmdPong, CID: f.CID, Content: "pong"})
	case CmdSingle:
		if err := checkDst(f.DstID); err != nil {
			return err
		}
		return h.sendFrame(ctx, n, f)
	case CmdRoom:
		if err := checkDst(f.DstID); err != nil {
			return err
		}
		if !h.isMember(n.user, f.DstID) {
			return ErrNotMember
		}
		if err := h.authorize(ctx, n, f.Cmd, f.DstID); err != nil {
			return err
		}
		return h.sendFrame(ctx, n, f)
	case CmdJoin:
		if err := checkDst(f.DstID); err != nil {
			return err
		}
		if err := h.authorize(ctx, n, f.Cmd, f.DstID); err != nil {
			return err
		}
		return h.joinAndReplay(ctx, n, f)
	case CmdLeave:
		if err := checkDst(f.DstID); err != nil {
			return err
		}
		return h.Leave(ctx, n.user, f.DstID)
	case CmdAck:
		ids := f.IDs
		if f.ID != "" {
			ids = append(ids, f.ID)
		}
		if len(ids) == 0 {
			return fmt.Errorf("%w: ack needs id or ids", ErrBadRequest)
		}
		return h.storeErr(h.store.Ack(ctx, n.user, ids...))
	case CmdHistory:
		if err := checkDst(f.DstID); err != nil {
			return err
		}
		return h.history(ctx, n, f, store.DirectConv(n.user, f.DstID))
	case CmdRoomHistory:
		if err := checkDst(f.DstID); err != nil {
			return err
		}
		if !h.isMember(n.user, f.DstID) {
			return ErrNotMember
		}
		if err := h.authorize(ctx, n, f.Cmd, f.DstID); err != nil {
			return err
		}
		return h.history(ctx, n, f, store.RoomConv(f.DstID))
	case CmdConversations:
		return h.conversations(ctx, n, f)
	case CmdRead:
		return h.markRead(ctx, n, f)
	case CmdTyping:
		return h.typing(ctx, n, f)
	case CmdPresence:
		return h.presenceCmd(ctx, n, f)
	}
	if f.Cmd >= CmdApp && h.opts.Dispatcher != nil {
		n.blocking() // the application's code may wait
		return h.opts.Dispatcher.Dispatch(ctx, n, f)
	}
	return fmt.Errorf("%w: %d", ErrUnknownCommand, f.Cmd)
}

// sendFrame stores and delivers a client's direct (cmd 10) or room (cmd
// 11) message, within its user's quota (Options.MessageRate,
// MaxRecipients), and answers the receipt. A message over the quota is
// refused with ErrQuota before anything is stored; one that stored
// nothing (a resend of a stored cid, a store failure) gives its charge
// back.
func (h *Hub) sendFrame(ctx context.Context, n *Node, f *Frame) error {
	if h.quotas != nil {
		to := ""
		if f.Cmd == CmdSingle {
			to = f.DstID
		}
		if err := h.quotas.spend(n.user, to, time.Now()); err != nil {
			return err
		}
	}
	var out *starter
	if !h.waits {
		// Handled on the connection's reading goroutine, which nothing
		// makes wait: the writes wait for the end of the read (ReadDone).
		out = n.readBatch()
	}
	r, dup, err := h.send(ctx, f.Cmd, n.user, f.DstID, f, n, out)
	if out != nil && len(out.conns) > writeShare {
		// A big room: its writes go out now, on goroutines of their own
		// (writeOut), while the next frames are read.
		n.writeBatch()
	}
	if h.quotas != nil && (dup || err != nil) {
		h.quotas.refund(n.user, time.Now())
	}
	if err != nil {
		return err
	}
	if h.waits {
		return n.Send(&r) // a flusher writes it (see pollBudget for why not here)
	}
	return n.answer(&r)
}

// authorize asks Options.AuthorizeRoom, if set. A refusal that is not an
// *Error becomes ErrForbidden.
func (h *Hub) authorize(ctx context.Context, n *Node, cmd Cmd, room string) error {
	if h.opts.AuthorizeRoom == nil {
		return nil
	}
	n.blocking() // the application's code may wait
	err := h.opts.AuthorizeRoom(ctx, n, cmd, room)
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrForbidden, err)
}

// storeErr turns a store failure into ErrInternal, keeping the cause for
// the log; a full pending queue becomes ErrPendingFull.
func (h *Hub) storeErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrPendingFull) {
		return fmt.Errorf("%w: %w", ErrPendingFull, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, store.ErrClosed) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return fmt.Errorf("%w: store: %w", ErrInternal, err)
}

// history answers cmd 16 and 17 with a window of conv.
func (h *Hub) history(ctx context.Context, n *Node, f *Frame, conv string) error {
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultLimit
	}
	limit = min(limit, h.opts.MaxHistory)
	page, err := h.store.History(ctx, conv, store.Query{Since: f.Since, Before: f.Before, Limit: limit})
	if err != nil {
		return h.storeErr(err)
	}
	reply := &Frame{Cmd: f.Cmd, CID: f.CID, DstID: f.DstID, Epoch: page.Epoch, More: page.More, Seq: page.Last, Items: make([]*Frame, 0, len(page.Items))}
	for i := range page.Items {
		reply.Items = append(reply.Items, frameOf(&page.Items[i]))
	}
	return n.Send(reply)
}

// errorFrame builds the cmd 40 answer to a failed frame.
func (h *Hub) errorFrame(n *Node, f *Frame, err error) *Frame {
	ef := h.buildErrorFrame(n, f, err)
	h.stats.count(&h.stats.errors, ef.Code)
	return ef
}

// buildErrorFrame is errorFrame without the counting.
func (h *Hub) buildErrorFrame(n *Node, f *Frame, err error) *Frame {
	var e *Error
	if !errors.As(err, &e) || e.Code >= 500 {
		attrs := []slog.Attr{slog.String("user", n.user), slog.String("conn", n.id), slog.Int("cmd", int(f.Cmd)), slog.Any("err", err)}
		if errors.Is(err, context.Canceled) && n.isClosing() {
			// The client went away while its frame was handled: routine,
			// and nobody is left to answer.
			h.log.LogAttrs(h.ctx, slog.LevelDebug, "wshub: frame of a closed connection cut short", attrs...)
		} else {
			h.log.LogAttrs(h.ctx, slog.LevelError, "wshub: dispatch failed", attrs...)
		}
		if e == nil {
			e = ErrInternal
		}
		return &Frame{Cmd: CmdError, CID: f.CID, Code: e.Code, Reason: e.Reason}
	}
	reason := e.Reason
	if err != error(e) {
		reason = trimPrefix(err.Error())
	}
	return &Frame{Cmd: CmdError, CID: f.CID, Code: e.Code, Reason: reason}
}

// trimPrefix drops the "wshub: " prefix of a wrapped error's text, which
// means nothing to a client.
func trimPrefix(s string) string {
	const p = "wshub: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
