package wecomsim

import (
	"container/heap"
	"time"
)

// Per-corp events of the discrete-event loop, in the order they run when
// due at the same instant.
const (
	evNotify = iota + 1
	evMessage
)

// schedEntry is a corp's event due at at. Entries are never updated in
// place: when a corp's next message or hit callback moves, a new entry is
// pushed, and an entry that no longer matches the corp's state (stale) is
// dropped when it reaches the top. So with thousands of corps each event
// costs O(log n), not a scan of every corp.
type schedEntry struct {
	at   time.Time
	kind int
	seq  uint64 // insertion order, for ties
	c    *corpState
}

// schedQueue is a min-heap of schedEntry by (at, kind, seq).
type schedQueue struct {
	h   []schedEntry
	seq uint64
}

func (q *schedQueue) Len() int { return len(q.h) }

func (q *schedQueue) Less(i, j int) bool {
	a, b := q.h[i], q.h[j]
	if !a.at.Equal(b.at) {
		return a.at.Before(b.at)
	}
	if a.kind != b.kind {
		return a.kind < b.kind
	}
	return a.seq < b.seq
}

func (q *schedQueue) Swap(i, j int) { q.h[i], q.h[j] = q.h[j], q.h[i] }

func (q *schedQueue) Push(x any) { q.h = append(q.h, x.(schedEntry)) }

func (q *schedQueue) Pop() any {
	e := q.h[len(q.h)-1]
	q.h[len(q.h)-1] = schedEntry{}
	q.h = q.h[:len(q.h)-1]
	return e
}

func (q *schedQueue) add(at time.Time, kind int, c *corpState) {
	q.seq++
	heap.Push(q, schedEntry{at: at, kind: kind, seq: q.seq, c: c})
}

// scheduleMessageLocked queues c's next message, if c has traffic.
func (s *Sim) scheduleMessageLocked(c *corpState) {
	if s.opts.MessageRate > 0 || c.rate > 0 {
		s.queue.add(c.nextMsgAt, evMessage, c)
	}
}

// scheduleNotifyLocked queues c's pending hit callback.
func (s *Sim) scheduleNotifyLocked(c *corpState) {
	if c.notifyPending {
		s.queue.add(c.notifyAt, evNotify, c)
	}
}

// live reports whether e still describes what c will do next. A corp that
// cancelled (neither archive nor zone any more) does nothing.
func (s *Sim) live(e schedEntry) bool {
	c := e.c
	if !c.archive && !c.zone {
		return false
	}
	switch e.kind {
	case evNotify:
		return c.notifyPending && c.notifyAt.Equal(e.at)
	case evMessage:
		return (s.opts.MessageRate > 0 || c.rate > 0) && c.nextMsgAt.Equal(e.at)
	}
	return false
}

// nextCorpEventLocked drops stale entries and returns the earliest live
// one, if any.
func (s *Sim) nextCorpEventLocked() (schedEntry, bool) {
	for s.queue.Len() > 0 {
		e := s.queue.h[0]
		if s.live(e) {
			return e, true
		}
		heap.Pop(&s.queue)
	}
	return schedEntry{}, false
}
