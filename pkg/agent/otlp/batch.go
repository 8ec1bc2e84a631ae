package otlp

import (
	"context"
	"sync"
	"time"
)

// budget bounds the bytes the agent holds for all signals: a request's
// encoded size is reserved when the receiver accepts it and released when
// the gateway has acknowledged (or refused) it, or it is given up.
type budget struct {
	mu        sync.Mutex
	used, max int
	onChange  func(used int)
}

// reserve takes n bytes if they fit.
func (b *budget) reserve(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.max {
		return false
	}
	b.used += n
	b.onChange(b.used)
	return true
}

func (b *budget) release(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.onChange(b.used)
}

func (b *budget) load() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// part is one accepted export request, enriched and encoded. Export
// requests of one signal concatenate: the concatenation of encoded
// messages of a type is one message whose repeated fields are the union,
// so a batch is sent as its parts' bytes one after the other.
type part struct {
	body  []byte
	items int
}

// batch is what goes to the gateway in one request.
type batch struct {
	parts        []part
	bytes, items int
}

// batcher collects one signal's parts into batches of at most maxItems
// items and maxBytes bytes (a part larger than that goes alone), handing
// out a batch when it is full or when its oldest part has waited timeout.
type batcher struct {
	maxItems, maxBytes int
	timeout            time.Duration

	mu                   sync.Mutex
	open                 []part
	openBytes, openItems int
	oldest               time.Time
	flushing             bool
	wake                 chan struct{} // closed (and replaced) on every change
}

func newBatcher(maxItems, maxBytes int, timeout time.Duration) *batcher {
	return &batcher{maxItems: maxItems, maxBytes: maxBytes, timeout: timeout, wake: make(chan struct{})}
}

// add queues p; the caller has reserved its bytes.
func (b *batcher) add(p part) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.open) == 0 {
		b.oldest = time.Now()
	}
	b.open = append(b.open, p)
	b.openBytes += len(p.body)
	b.openItems += p.items
	b.notifyLocked()
}

func (b *batcher) notifyLocked() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// take waits for the next batch. It returns false when ctx ends, or when
// flushing and nothing is left.
func (b *batcher) take(ctx context.Context) (*batch, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		var due <-chan time.Time
		if len(b.open) > 0 {
			wait := b.timeout - time.Since(b.oldest)
			if b.flushing || wait <= 0 || b.openBytes >= b.maxBytes || b.openItems >= b.maxItems {
				bt := b.cutLocked()
				b.mu.Unlock()
				return bt, true
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			due = timer.C
		} else if b.flushing {
			b.mu.Unlock()
			return nil, false
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-due:
		case <-ctx.Done():
			return nil, false
		}
	}
}

// cutLocked takes the first parts that fit one batch.
func (b *batcher) cutLocked() *batch {
	bt := &batch{}
	n := 0
	for _, p := range b.open {
		if n > 0 && (bt.bytes+len(p.body) > b.maxBytes || bt.items+p.items > b.maxItems) {
			break
		}
		bt.bytes += len(p.body)
		bt.items += p.items
		n++
	}
	bt.parts = append([]part(nil), b.open[:n]...)
	rest := copy(b.open, b.open[n:])
	clear(b.open[rest:])
	b.open = b.open[:rest]
	b.openBytes -= bt.bytes
	b.openItems -= bt.items
	// The remaining parts arrived later than the ones cut: restarting their
	// clock at the cut delays them by at most one timeout.
	b.oldest = time.Now()
	return bt
}

// flush makes take hand out what is open at once, and return false once
// nothing is left: the shutdown.
func (b *batcher) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushing = true
	b.notifyLocked()
}

// drain removes and returns what is still open (after the senders gave up).
func (b *batcher) drain() (items, bytes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	items, bytes = b.openItems, b.openBytes
	clear(b.open)
	b.open, b.openItems, b.openBytes = b.open[:0], 0, 0
	return items, bytes
}

// pending is what waits for a batch.
func (b *batcher) pending() (items, bytes int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openItems, b.openBytes
}
