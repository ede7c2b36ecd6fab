package client

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/wshub/wshub"
)

// cmdPresence is the presence command (SPEC.md section 3, cmd 21).
const cmdPresence = wshub.CmdPresence

// MaxWatch is the most user ids one Watch may carry; the hub refuses more.
const MaxWatch = wshub.MaxWatch

// Presence is whether a user is online: has at least one open connection
// on a hub process sharing the store.
type Presence struct {
	UserID string
	Online bool
	// TS is the server time (Unix milliseconds) of a transition reported
	// to Options.OnPresence; 0 for a state listed in a reply (Watch,
	// RoomPresence, or the automatic re-watch after a reconnect).
	TS int64
}

// presenceList returns the states a reply lists.
func presenceList(f *wshub.Frame) []Presence {
	ps := make([]Presence, 0, len(f.Items))
	for _, it := range f.Items {
		if it != nil {
			ps = append(ps, Presence{UserID: it.UserID, Online: it.Online != nil && *it.Online})
		}
	}
	return ps
}

// Watch asks the hub to report the presence of the users ids (cmd 21) and
// returns their current states, in the hub's order. It replaces what was
// watched before (Watch() with no ids watches nobody); from then on every
// transition of one of them, from no connection to one or from one to
// none on any hub process sharing the store, comes to Options.OnPresence.
// At most MaxWatch ids.
//
// The hub keeps the watch per connection. The client remembers the latest
// list and sends it again after every reconnect; the fresh states the hub
// answers come to Options.OnPresence (with TS 0), since transitions may
// have been missed meanwhile. The request itself is asked again after a
// reconnect until it is answered or ctx ends; the list is remembered even
// when ctx ends first.
func (c *Client) Watch(ctx context.Context, ids ...string) ([]Presence, error) {
	if len(ids) > MaxWatch {
		return nil, fmt.Errorf("%w: %d ids to watch, at most %d", wshub.ErrBadRequest, len(ids), MaxWatch)
	}
	if slices.Contains(ids, "") {
		return nil, fmt.Errorf("%w: empty user id to watch", wshub.ErrBadRequest)
	}
	ids = slices.Clone(ids)
	c.mu.Lock()
	c.watching = ids
	c.mu.Unlock()
	return c.presenceRequest(ctx, &wshub.Frame{Cmd: cmdPresence, IDs: ids})
}

// Watching returns the user ids of the latest Watch: the list the client
// sends again after a reconnect.
func (c *Client) Watching() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.watching)
}

// RoomPresence returns the members of room and whether each is online
// (cmd 21 with room). It watches nothing. Only members may ask: otherwise
// it fails with a *ServerError matching wshub.ErrNotMember (403). The
// request is asked again after a reconnect until it is answered or ctx
// ends.
func (c *Client) RoomPresence(ctx context.Context, room string) ([]Presence, error) {
	if room == "" {
		return nil, fmt.Errorf("%w: empty room", wshub.ErrMissingDst)
	}
	return c.presenceRequest(ctx, &wshub.Frame{Cmd: cmdPresence, DstID: room, Room: true})
}

// presenceRequest sends a cmd 21 request and waits for the states its
// reply lists.
func (c *Client) presenceRequest(ctx context.Context, f *wshub.Frame) ([]Presence, error) {
	e, err := c.enqueueEncoded(f, kindRequest, true, encodePresence)
	if err != nil {
		return nil, err
	}
	r := c.waitResult(ctx, e)
	if r.err != nil {
		return nil, r.err
	}
	return r.presence, nil
}

// encodePresence encodes a cmd 21 request. A watch of nobody needs
// "ids":[] on the wire, which Frame.Encode leaves out.
func encodePresence(f *wshub.Frame) ([]byte, error) {
	if f.DstID != "" || len(f.IDs) > 0 {
		return f.Encode()
	}
	return json.Marshal(struct {
		Cmd wshub.Cmd `json:"cmd"`
		CID string    `json:"cid,omitempty"`
		IDs []string  `json:"ids"`
	}{f.Cmd, f.CID, []string{}})
}

// rewatchFrame returns the cmd 21 frame that watches the remembered list
// again on a new connection, or nil when there is none to send: nothing
// watched, or a Watch still waiting in the outbox (written again anyway,
// and newer). Called with c.mu held; it sets c.rewatchCID.
func (c *Client) rewatchFrame() []byte {
	c.rewatchCID = ""
	if len(c.watching) == 0 {
		return nil
	}
	for e := c.out.head; e != nil; e = e.next {
		if e.kind == kindRequest && e.cmd == cmdPresence && e.dst == "" {
			return nil
		}
	}
	c.rewatchCID = c.newCID()
	b, err := (&wshub.Frame{Cmd: cmdPresence, CID: c.rewatchCID, IDs: c.watching}).Encode()
	if err != nil {
		return nil
	}
	return b
}

// handlePresence handles a cmd 21 frame: a transition of a watched user
// (it names the user and lists nothing), the reply to a Watch or
// RoomPresence, or the reply to the automatic re-watch.
func (c *Client) handlePresence(f *wshub.Frame) {
	if f.Items == nil && f.UserID != "" {
		c.reportPresence(Presence{UserID: f.UserID, Online: f.Online != nil && *f.Online, TS: f.TS})
		return
	}
	c.mu.Lock()
	e := c.out.get(f.CID)
	if e == nil || e.kind != kindRequest || e.cmd != cmdPresence {
		e = nil
	}
	rewatch := false
	switch {
	case e != nil:
	case f.CID != "" && f.CID == c.rewatchCID:
		rewatch = true
	case f.CID == "":
		// A hub that does not echo cids: the oldest request for the same
		// target, else the re-watch.
		if e = c.out.firstRequest(cmdPresence, f.DstID); e == nil {
			rewatch = f.DstID == "" && c.rewatchCID != ""
		}
	}
	if e != nil {
		c.out.unlink(e)
	}
	if rewatch {
		c.rewatchCID = ""
	}
	c.mu.Unlock()
	switch {
	case e != nil:
		e.complete(result{f: f, presence: presenceList(f)})
	case rewatch:
		for _, p := range presenceList(f) {
			c.reportPresence(p)
		}
	}
}

// reportPresence passes p to Options.OnPresence.
func (c *Client) reportPresence(p Presence) {
	if c.opts.OnPresence != nil {
		c.opts.OnPresence(p)
	}
}
