// Command bench measures the ReadConfig round trip (p50/p99) and pipelined Session throughput.
// Usage: bench [target] [unaryCount] [sessionCount]
// On TCP the token comes from $PCIEEMU_TOKEN, else the server's default token file.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	pcieemu "github.com/pcieemu/pcieemu/clients/go/pcieemu"
)

func arg(i int, def int) int {
	if len(os.Args) > i {
		if v, err := strconv.Atoi(os.Args[i]); err == nil {
			return v
		}
	}
	return def
}

func run() error {
	target := ""
	if len(os.Args) > 1 {
		target = os.Args[1]
	}
	unary, pipelined := arg(2, 5000), arg(3, 200000)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := pcieemu.Dial(ctx, target)
	if err != nil {
		return err
	}
	defer c.Close()
	for i := 0; i < 500; i++ { // warm-up
		if _, err := c.ReadConfig(ctx, 0x100, 0, 4); err != nil {
			return err
		}
	}
	t := make([]time.Duration, unary)
	for i := range t {
		s := time.Now()
		if _, err := c.ReadConfig(ctx, 0x100, 0, 4); err != nil {
			return err
		}
		t[i] = time.Since(s)
	}
	sort.Slice(t, func(a, b int) bool { return t[a] < t[b] })
	s, err := c.OpenSession(ctx)
	if err != nil {
		return err
	}
	const window = 4096
	start := time.Now()
	ps := make([]*pcieemu.Pending, 0, window)
	for done := 0; done < pipelined; done += window {
		ps = ps[:0]
		for i := 0; i < window; i++ {
			p, err := s.ConfigRead(0x100, 0, 4)
			if err != nil {
				return err
			}
			ps = append(ps, p)
		}
		for _, p := range ps {
			if _, err := p.Wait(ctx); err != nil {
				return err
			}
		}
	}
	secs := time.Since(start).Seconds()
	if err := s.Close(); err != nil {
		return err
	}
	fmt.Println("| client | ReadConfig p50 (us) | p99 (us) | Session reads/s |")
	fmt.Println("| --- | --- | --- | --- |")
	fmt.Printf("| go | %d | %d | %.0f |\n", t[len(t)/2].Microseconds(), t[len(t)*99/100].Microseconds(), float64(pipelined)/secs)
	return nil
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
