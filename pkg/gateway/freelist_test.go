package gateway

import "testing"

func TestFreeListIsBoundedAndLIFO(t *testing.T) {
	f := newFreeList[int](2)
	if _, ok := f.get(); ok {
		t.Fatal("empty list returned a value")
	}
	f.put(1)
	f.put(2)
	f.put(3) // dropped: the list is full
	for _, want := range []int{2, 1} {
		if v, ok := f.get(); !ok || v != want {
			t.Fatalf("get = %d, %v; want %d, true", v, ok, want)
		}
	}
	if v, ok := f.get(); ok {
		t.Fatalf("get = %d from a list that kept two values", v)
	}
}
