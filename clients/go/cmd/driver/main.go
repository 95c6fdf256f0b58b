// Command driver is the example driver: enumerate, enable 2 VFs on PF0, read a VF's config
// without ARI (02:10.0) and with ARI (01:10.0), then send a frame from VF0 to VF1 through the
// NIC's VMDq loopback and one from VF0 to the wire.
// Usage: driver [tcp://127.0.0.1:50551 | unix:///path]
// On TCP the token comes from $PCIEEMU_TOKEN, else the server's default token file.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	pcieemu "github.com/pcieemu/pcieemu/clients/go/pcieemu"
)

func run(target string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := pcieemu.Dial(ctx, target)
	if err != nil {
		return err
	}
	defer c.Close()
	fns, err := c.ListFunctions(ctx)
	if err != nil {
		return err
	}
	for _, f := range fns {
		fmt.Printf("%s %04x:%04x class %06x %s\n", f.Bdf, f.VendorId, f.DeviceId, f.ClassCode, f.Name)
	}
	pf0 := pcieemu.MustParseBDF("01:00.0")
	for _, ari := range []bool{false, true} {
		vfs, err := c.EnableSRIOV(ctx, pf0, 2, pcieemu.SRIOVOptions{ARI: ariMode(ari)})
		if err != nil {
			return err
		}
		fmt.Printf("ARI %-3s: VFs at %s, %s\n", map[bool]string{false: "off", true: "on"}[ari], pcieemu.FormatBDF(vfs[0]), pcieemu.FormatBDF(vfs[1]))
		vf := pcieemu.MustParseBDF(map[bool]string{false: "02:10.0", true: "01:10.0"}[ari])
		r, err := c.ReadConfig(ctx, vf, pcieemu.RegClassRevision, 4)
		if err != nil {
			return err
		}
		fmt.Printf("  %s class/rev = 0x%08x (%s)\n", pcieemu.FormatBDF(vf), r.Value, r.Status)
		if err := c.DisableSRIOV(ctx, pf0, 0); err != nil {
			return err
		}
	}
	return vfToVf(ctx, c, pf0)
}

func main() {
	target := ""
	if len(os.Args) > 1 {
		target = os.Args[1]
	}
	if err := run(target); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func ariMode(on bool) pcieemu.ARIMode {
	if on {
		return pcieemu.ARIOn
	}
	return pcieemu.ARIOff
}
