package split

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tributary-io/tributary/pkg/reject"
)

func TestGrouperFirstSeenOrder(t *testing.T) {
	var g Grouper
	g.Reset(0)
	for i, c := range []string{"b", "a", "b", "c", "a"} {
		want := map[string]int{"b": 0, "a": 1, "c": 2}[c]
		got, err := g.GroupString(c)
		if err != nil || got != want {
			t.Fatalf("item %d (%s): got %d, %v; want %d", i, c, got, err, want)
		}
	}
	if fmt.Sprint(g.Names()) != "[b a c]" {
		t.Fatalf("names %v", g.Names())
	}
	g.Reset(0)
	if g.Len() != 0 {
		t.Fatalf("reset kept %d names", g.Len())
	}
}

func TestGrouperBound(t *testing.T) {
	var g Grouper
	g.Reset(2)
	g.GroupString("a")
	g.GroupString("b")
	if _, err := g.GroupString("a"); err != nil {
		t.Fatalf("known cluster refused: %v", err)
	}
	_, err := g.GroupString("c")
	if code, ok := reject.Status(err); !ok || code != http.StatusBadRequest {
		t.Fatalf("third cluster: got %v, want a 400", err)
	}
}

// 128k distinct clusters: linear time (the old split was quadratic and took
// tens of seconds for this many).
func TestGrouperLinear(t *testing.T) {
	var g Grouper
	g.Reset(1 << 20)
	start := time.Now()
	for i := 0; i < 128_000; i++ {
		if _, err := g.GroupString(fmt.Sprintf("c%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("128k clusters took %s", d)
	}
}
