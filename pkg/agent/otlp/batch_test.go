package otlp

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func partOf(bytes, items int) part { return part{body: make([]byte, bytes), items: items} }

func TestBatcherBounds(t *testing.T) {
	ctx := context.Background()
	b := newBatcher(10, 100, time.Hour)
	// Bytes: 40+40 fit, the third would pass 100.
	b.add(partOf(40, 1))
	b.add(partOf(40, 1))
	b.add(partOf(40, 1))
	bt, ok := b.take(ctx)
	require.True(t, ok)
	require.Equal(t, 2, len(bt.parts))
	require.Equal(t, 80, bt.bytes)
	items, bytes := b.pending()
	require.Equal(t, 1, items)
	require.Equal(t, 40, bytes)

	// Items: 6+6 is over 10, so 6 goes alone once the open batch is full.
	b = newBatcher(10, 1000, time.Hour)
	b.add(partOf(1, 6))
	b.add(partOf(1, 6))
	bt, ok = b.take(ctx)
	require.True(t, ok)
	require.Equal(t, 6, bt.items)

	// A part larger than a batch goes alone.
	b = newBatcher(10, 100, time.Hour)
	b.add(partOf(500, 1))
	b.add(partOf(1, 1))
	bt, ok = b.take(ctx)
	require.True(t, ok)
	require.Len(t, bt.parts, 1)
	require.Equal(t, 500, bt.bytes)
}

func TestBatcherTimeoutAndFlush(t *testing.T) {
	b := newBatcher(10, 100, 50*time.Millisecond)
	// Not full: nothing until the timeout.
	b.add(partOf(1, 1))
	start := time.Now()
	bt, ok := b.take(context.Background())
	require.True(t, ok)
	require.GreaterOrEqual(t, time.Since(start), 40*time.Millisecond)
	require.Equal(t, 1, bt.items)

	// Empty: take waits for ctx.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, ok = b.take(ctx)
	require.False(t, ok)

	// A take waiting on an empty batcher wakes for an add.
	got := make(chan *batch)
	go func() {
		bt, _ := b.take(context.Background())
		got <- bt
	}()
	time.Sleep(10 * time.Millisecond)
	b.add(partOf(200, 3))
	require.Equal(t, 3, (<-got).items)

	// Flush hands out the open batch at once, then reports the end.
	b = newBatcher(10, 100, time.Hour)
	b.add(partOf(1, 2))
	b.flush()
	bt, ok = b.take(context.Background())
	require.True(t, ok)
	require.Equal(t, 2, bt.items)
	_, ok = b.take(context.Background())
	require.False(t, ok)
}
