//go:build linux

package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/memstore"
)

// The direct floor server ("serve -floor-direct") is the yardstick of the
// direct scenario: the cheapest correct forwarder of direct messages a Go
// team would write, and nothing more. A map of user to connections under
// one mutex; one writer goroutine per connection fed by a buffered channel
// (gorilla's chat pattern); for every cmd 10 frame it reads, it decodes the
// JSON (encoding/json), stamps the sender's user id and the time, encodes
// the frame again and queues it to each connection of the recipient, then
// queues the sender a cmd 15 receipt carrying the frame's cid. No store,
// no ids that survive a restart, no queue for a user who is offline (the
// message is dropped, still receipted), no pings, no limits. Run the
// direct scenario with -store mem,floor to measure it next to the hub in
// the same sitting and compare hub_cpu_s_per_million_messages.
//
// With -floor-direct-store ("floorstore" in the direct scenario's -store
// list) it also does the storage work the hub does with its memory store,
// where the hub does it: each message is appended to a memstore.Store
// (history, the recipient's pending queue, the cid record) before it is
// queued, with the seq the store gives, and each delivery leaves the
// pending queue once its writer wrote it (as a hub connection without
// ack=1). A yardstick for what storing costs the chat pattern.

// floorDirectQueue is how many frames a connection's writer may have
// waiting; a connection that falls that far behind is closed, as the chat
// pattern does.
const floorDirectQueue = 256

// directFloor holds the users of the direct floor server.
type directFloor struct {
	log      *slog.Logger
	upgrader websocket.Upgrader

	mu    sync.RWMutex
	users map[string][]*directFloorConn // guarded by mu: connections by user
	seq   atomic.Uint64                 // receipt sequence numbers
	// store, when not nil, stores each message as the hub does
	// (-floor-direct-store).
	store *memstore.Store
}

// directFloorConn is one connection to the direct floor server.
type directFloorConn struct {
	user string
	ws   *websocket.Conn
	// send feeds the writer goroutine; closed (under directFloor.mu, after
	// the connection left the map) when the reader ends.
	send chan floorOut
	// store is directFloor.store: deliveries leave the user's pending
	// queue once written.
	store *memstore.Store
}

// floorOut is one frame for a connection's writer: ack, when not empty,
// is the id of a stored message it delivers.
type floorOut struct {
	p   []byte
	ack string
}

// floorFrame is the part of the wire frame the forwarder looks at and
// passes on.
type floorFrame struct {
	Cmd     int    `json:"cmd"`
	ID      string `json:"id,omitempty"`
	CID     string `json:"cid,omitempty"`
	UserID  string `json:"userid,omitempty"`
	DstID   string `json:"dstid,omitempty"`
	Content string `json:"content,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	TS      int64  `json:"ts,omitempty"`
}

func newDirectFloor(log *slog.Logger, stored bool) *directFloor {
	s := &directFloor{
		log:      log,
		upgrader: floorUpgrader(),
		users:    make(map[string][]*directFloorConn),
	}
	if stored {
		s.store = memstore.New(memstore.Options{})
	}
	return s
}

func (s *directFloor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, ws, ok := floorAccept(&s.upgrader, w, r)
	if !ok {
		return
	}
	c := &directFloorConn{user: user, ws: ws, send: make(chan floorOut, floorDirectQueue), store: s.store}
	s.mu.Lock()
	s.users[user] = append(s.users[user], c)
	s.mu.Unlock()
	go c.writeLoop()
	defer s.leave(c)
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		var f floorFrame
		if err := json.Unmarshal(msg, &f); err != nil {
			return
		}
		if f.Cmd != 10 || f.DstID == "" {
			continue
		}
		s.direct(c, &f)
	}
}

// direct forwards f from c to the connections of f.DstID and answers c
// with a receipt.
func (s *directFloor) direct(c *directFloorConn, f *floorFrame) {
	seq := s.seq.Add(1)
	cid := f.CID
	f.ID = "0192f7a4-6b1c-7d2e-8f3a-" + strconv.FormatUint(1e11+seq, 10)
	f.CID = ""
	f.UserID = c.user
	f.Seq = seq
	f.TS = time.Now().UnixMilli()
	ack := ""
	if s.store != nil {
		body, err := json.Marshal(struct {
			Content string `json:"content,omitempty"`
		}{f.Content})
		if err != nil {
			return
		}
		m, _, err := s.store.Append(context.Background(), store.AppendRequest{
			Msg: store.Message{ID: f.ID, TS: f.TS, Cmd: 10, From: c.user, To: f.DstID,
				Conv: store.DirectConv(c.user, f.DstID), Body: body},
			CID: cid, Pending: []string{f.DstID},
		})
		if err != nil {
			return
		}
		f.Seq, seq, ack = m.Seq, m.Seq, m.ID
	}
	out, err := json.Marshal(f)
	if err != nil {
		return
	}
	receipt, err := json.Marshal(floorFrame{Cmd: 15, CID: cid, ID: f.ID, DstID: f.DstID, Seq: seq, TS: f.TS})
	if err != nil {
		return
	}
	s.mu.RLock()
	for _, to := range s.users[f.DstID] {
		to.queue(floorOut{out, ack})
	}
	c.queue(floorOut{p: receipt})
	s.mu.RUnlock()
}

// queue hands p to the connection's writer without blocking; a
// connection whose queue is full is closed (its reader then ends and
// takes it out of the map). The caller holds directFloor.mu, so send is
// open.
func (c *directFloorConn) queue(p floorOut) {
	select {
	case c.send <- p:
	default:
		_ = c.ws.UnderlyingConn().Close()
	}
}

// writeLoop writes the queued frames, one WebSocket message each, until
// send is closed.
func (c *directFloorConn) writeLoop() {
	for p := range c.send {
		_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
		err := c.ws.WriteMessage(websocket.TextMessage, p.p)
		if err == nil && p.ack != "" {
			err = c.store.Ack(context.Background(), c.user, p.ack)
		}
		if err != nil {
			_ = c.ws.UnderlyingConn().Close()
			for range c.send { // drain until the reader closes send
			}
			return
		}
	}
}

// leave takes c out of the map and stops its writer.
func (s *directFloor) leave(c *directFloorConn) {
	s.mu.Lock()
	cs := s.users[c.user]
	for i, m := range cs {
		if m == c {
			cs = append(cs[:i:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(s.users, c.user)
	} else {
		s.users[c.user] = cs
	}
	close(c.send)
	s.mu.Unlock()
	_ = c.ws.Close()
}
