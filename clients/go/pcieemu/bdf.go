package pcieemu

import (
	"fmt"
	"regexp"
	"strconv"
)

// RID builds a routing ID: bus << 8 | device << 3 | function.
func RID(bus, device, function int) (uint32, error) {
	if bus < 0 || bus > 255 {
		return 0, fmt.Errorf("bus must be 0-255 (was %d)", bus)
	}
	if device < 0 || device > 31 {
		return 0, fmt.Errorf("device must be 0-31 (was %d)", device)
	}
	if function < 0 || function > 7 {
		return 0, fmt.Errorf("function must be 0-7 (was %d)", function)
	}
	return uint32(bus<<8 | device<<3 | function), nil
}

// AriRID builds an ARI routing ID: bus << 8 | function (function 0-255).
func AriRID(bus, function uint8) uint32 { return uint32(bus)<<8 | uint32(function) }

// FormatBDF formats a routing ID lspci-style, "bb:dd.f".
func FormatBDF(rid uint32) string {
	return fmt.Sprintf("%02x:%02x.%d", (rid>>8)&0xff, (rid>>3)&0x1f, rid&7)
}

var bdfPattern = regexp.MustCompile(`^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$`)

// ParseBDF parses "bb:dd.f" (optionally "0000:bb:dd.f") into a routing ID.
func ParseBDF(text string) (uint32, error) {
	m := bdfPattern.FindStringSubmatch(text)
	if m == nil {
		return 0, fmt.Errorf("%q is not a BDF (expected bb:dd.f, e.g. 01:00.0)", text)
	}
	if m[1] != "" {
		if seg, _ := strconv.ParseUint(m[1], 16, 16); seg != 0 {
			return 0, fmt.Errorf("%q: only segment 0 exists", text)
		}
	}
	bus, _ := strconv.ParseUint(m[2], 16, 8)
	dev, _ := strconv.ParseUint(m[3], 16, 8)
	fn, _ := strconv.ParseUint(m[4], 10, 8)
	if dev > 31 {
		return 0, fmt.Errorf("%q: device must be 00-1f", text)
	}
	return RID(int(bus), int(dev), int(fn))
}

// MustParseBDF is ParseBDF for constants; it panics on a malformed BDF.
func MustParseBDF(text string) uint32 {
	r, err := ParseBDF(text)
	if err != nil {
		panic(err)
	}
	return r
}
