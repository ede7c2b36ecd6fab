//go:build linux

package main

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// The floor server ("serve -floor") is what the fan-out scenarios cost a
// server that does nothing but the unavoidable: it answers joins, and for
// every room message it reads it answers the sender's receipt and writes
// the message to each other member of the room with one write system
// call, in a loop, spread over one goroutine per processor for a big room
// like the hub's. No store, no queues, no ids, no pings, no limits: not a
// hub, a yardstick. Run a scenario against
// it with -floor and compare its hub_cpu_s_per_million_deliveries with the
// hub's.

// floorServer holds the rooms of the floor server.
type floorServer struct {
	log      *slog.Logger
	upgrader websocket.Upgrader

	mu    sync.Mutex
	rooms map[string][]*floorConn // guarded by mu: members by room
	seq   uint64                  // guarded by mu
}

// floorConn is one connection to the floor server.
type floorConn struct {
	user string
	nc   net.Conn   // under ws: room messages are written to it directly
	wmu  sync.Mutex // serializes whole frames written to nc
}

func newFloorServer(log *slog.Logger) *floorServer {
	return &floorServer{
		log:      log,
		upgrader: floorUpgrader(),
		rooms:    make(map[string][]*floorConn),
	}
}

func (s *floorServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	user, ws, ok := floorAccept(&s.upgrader, w, r)
	if !ok {
		return
	}
	c := &floorConn{user: user, nc: ws.UnderlyingConn()}
	defer ws.Close()
	var joined []string
	defer func() { s.leave(c, joined) }()
	for {
		_, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		cid := strField(msg, "cid")
		room := string(strField(msg, "dstid"))
		switch lineCmd(msg) {
		case 12:
			s.mu.Lock()
			s.rooms[room] = append(s.rooms[room], c)
			s.mu.Unlock()
			joined = append(joined, room)
			c.write([]byte(`{"cmd":12,"cid":"` + string(cid) + `","dstid":"` + room + `"}`))
		case 11:
			s.room(c, room, cid, strField(msg, "content"))
		}
	}
}

// room answers the receipt and writes the message to the other members.
func (s *floorServer) room(from *floorConn, room string, cid, content []byte) {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	members := s.rooms[room]
	s.mu.Unlock()
	ts := strconv.FormatInt(time.Now().UnixMilli(), 10)
	id := "0192f7a4-6b1c-7d2e-8f3a-" + strconv.FormatUint(1e11+seq, 10)
	from.write([]byte(`{"cmd":15,"cid":"` + string(cid) + `","id":"` + id + `","dstid":"` + room + `","seq":` + strconv.FormatUint(seq, 10) + `,"ts":` + ts + `}`))
	// The frame the hub would send: the same fields, about the same size.
	f := []byte(`{"cmd":11,"id":"` + id + `","userid":"` + from.user + `","dstid":"` + room +
		`","content":"` + string(content) + `","seq":` + strconv.FormatUint(seq, 10) + `,"ts":` + ts + `}`)
	frame := textFrameBytes(f)
	// Spread over the processors as the hub does, so that the yardstick's
	// latency is the best one write per delivery allows here.
	k := max(1, min(runtime.GOMAXPROCS(0), len(members)/64))
	per := (len(members) + k - 1) / k
	for i := 0; i < len(members); i += per {
		part := members[i:min(i+per, len(members))]
		write := func() {
			for _, m := range part {
				if m != from {
					m.writeFrame(frame)
				}
			}
		}
		if i+per >= len(members) {
			write() // the last part on this goroutine
		} else {
			go write()
		}
	}
}

// leave takes c out of its rooms.
func (s *floorServer) leave(c *floorConn, rooms []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, room := range rooms {
		ms := s.rooms[room]
		for i, m := range ms {
			if m == c {
				s.rooms[room] = append(ms[:i:i], ms[i+1:]...)
				break
			}
		}
	}
}

// write writes p as one text frame.
func (c *floorConn) write(p []byte) { c.writeFrame(textFrameBytes(p)) }

// writeFrame writes an encoded frame with one write; a failing
// connection is left to its reader to end.
func (c *floorConn) writeFrame(frame []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.nc.Write(frame)
}

// textFrameBytes encodes p as an unmasked text frame.
func textFrameBytes(p []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(0x81)
	switch n := len(p); {
	case n < 126:
		b.WriteByte(byte(n))
	case n <= 0xFFFF:
		b.WriteByte(126)
		b.Write(binary.BigEndian.AppendUint16(nil, uint16(n)))
	default:
		b.WriteByte(127)
		b.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
	}
	b.Write(p)
	return b.Bytes()
}

// floorUpgrader is the floor servers' upgrader: small buffers, any origin.
func floorUpgrader() websocket.Upgrader {
	return websocket.Upgrader{ReadBufferSize: 1024, WriteBufferSize: 1024, CheckOrigin: func(*http.Request) bool { return true }}
}

// floorAccept takes the user from the token query parameter (401 without
// one) and upgrades the request; ok is false when it answered already.
func floorAccept(up *websocket.Upgrader, w http.ResponseWriter, r *http.Request) (user string, ws *websocket.Conn, ok bool) {
	user = r.URL.Query().Get("token")
	if user == "" {
		http.Error(w, "token required", http.StatusUnauthorized)
		return "", nil, false
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return "", nil, false
	}
	return user, ws, true
}
