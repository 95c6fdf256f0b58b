package pcieemu

// Version is the client's version, the one version of every PcieEmu client (clients/VERSION;
// a test fails when they differ). The module is tagged clients/go/vVersion.
const Version = "0.2.0"
