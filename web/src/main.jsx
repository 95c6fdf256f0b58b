// The live machine view of pcie-emu serve. Everything shown arrives by server push
// (/api/events, server-sent events, at most ~10 updates/s); the page never sends anything
// that changes the machine (the server answers GET only).
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './style.css';

const TABS = ['config', 'registers', 'rings', 'msix', 'vtd', 'trace', 'violations', 'counters'];
const TAB_NAMES = { config: 'Config space', registers: 'BAR registers', rings: 'Rings', msix: 'MSI-X', vtd: 'VT-d', trace: 'Trace', violations: 'Violations', counters: 'Counters' };
const KINDS = ['CFG', 'MMIO', 'DMA', 'MSI', 'MSI-X', 'INTx', 'VTD-EVT', 'VTD', 'FRAME', 'LIFE'];

const hex = (v, w) => v.toString(16).toUpperCase().padStart(w, '0');

function readHash() {
  const p = new URLSearchParams(location.hash.slice(1));
  return { bdf: p.get('bdf') || '', tab: TABS.includes(p.get('tab')) ? p.get('tab') : 'config', walk: p.get('walk') || '', iova: p.get('iova') || '' };
}

function writeHash(s) {
  const p = new URLSearchParams();
  if (s.bdf) p.set('bdf', s.bdf);
  p.set('tab', s.tab);
  if (s.walk) p.set('walk', s.walk);
  if (s.iova) p.set('iova', s.iova);
  history.replaceState(null, '', '#' + p.toString());
}

// One server-push stream for the current selection; reopened when the selection changes.
function useUpdates(params) {
  const [data, setData] = useState(null);
  const [status, setStatus] = useState('connecting');
  const [error, setError] = useState(null);
  const key = new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();
  useEffect(() => {
    const es = new EventSource('api/events' + (key ? '?' + key : ''));
    es.addEventListener('update', (ev) => { setData(JSON.parse(ev.data)); setStatus('live'); setError(null); });
    es.onerror = () => {
      setStatus('down');
      // A 4xx (bad filter) closes the stream: fetch it once to show the server's message.
      if (es.readyState === EventSource.CLOSED) fetch('api/events?' + key).then((r) => r.ok ? null : r.text()).then((t) => t && setError(t));
    };
    return () => es.close();
  }, [key]);
  return [data, status, error];
}

function Tree({ topology, selected, onSelect }) {
  if (!topology) return null;
  const children = (rid) => topology.functions.filter((f) => f.parent === rid);
  const node = (f) => (
    <li key={f.bdf}>
      <div class={'tree-node' + (f.bdf === selected ? ' selected' : '')} data-bdf={f.bdf} data-kind={f.kind} onClick={() => onSelect(f.bdf)}>
        {f.bdf} {f.name}<span class="kind">{hex(f.vendorId, 4)}:{hex(f.deviceId, 4)}</span>
      </div>
      {children(f.rid).length > 0 && <ul>{children(f.rid).map(node)}</ul>}
    </li>
  );
  return (
    <div class="tree" id="tree">
      <ul>{topology.functions.filter((f) => f.parent === null).map(node)}</ul>
      <p class="muted">topology version {topology.version}; root port secondary bus {hex(topology.secondaryBus, 2)}; ARI forwarding {topology.ariForwarding ? 'on' : 'off'}</p>
    </div>
  );
}

function b64(s) { const b = atob(s); const a = new Uint8Array(b.length); for (let i = 0; i < b.length; i++) a[i] = b.charCodeAt(i); return a; }

// Config space as a hex grid; a byte that changed stays highlighted for 2 s.
function HexGrid({ fn }) {
  const prev = useRef({ bdf: null, bytes: null, changedAt: [] });
  const bytes = b64(fn.config);
  const now = Date.now();
  const p = prev.current;
  if (p.bdf !== fn.bdf) { p.bdf = fn.bdf; p.bytes = bytes; p.changedAt = []; }
  for (let i = 0; i < bytes.length; i++) if (p.bytes && p.bytes[i] !== bytes[i]) p.changedAt[i] = now;
  p.bytes = bytes;
  const rows = [];
  for (let o = 0; o < bytes.length; o += 16) {
    let zero = true;
    for (let i = 0; i < 16; i++) if (bytes[o + i]) zero = false;
    if (zero && o >= 0x40 && !p.changedAt.slice(o, o + 16).some((t) => now - t < 2000)) continue;
    rows.push(
      <tr key={o}>
        <td class="off">{hex(o, 3)}:</td>
        {Array.from(bytes.slice(o, o + 16)).map((b, i) => (
          <td key={i} class={now - (p.changedAt[o + i] || 0) < 2000 ? 'changed' : ''} data-offset={o + i}>{hex(b, 2)}</td>
        ))}
      </tr>,
    );
  }
  return (
    <div>
      <table class="hex" id="hexgrid"><tbody>{rows}</tbody></table>
      <p class="muted">{bytes.length} bytes; all-zero rows above 0x40 hidden</p>
    </div>
  );
}

function Decoded({ groups }) {
  return (
    <div id="decoded">
      {groups.map((g) => (
        <div class="group" key={g.offset} data-group={g.name}>
          <h3>{g.name} <span class="off">@ 0x{hex(g.offset, 3)}{g.extended ? ' (extended)' : ''}</span></h3>
          <table>
            <tbody>
              {g.registers.map((r) => [
                <tr key={r.offset + r.name} data-register={r.name}>
                  <td class="mono muted">{hex(r.offset, 3)}</td><td>{r.name}</td><td class="mono">0x{hex(r.value, r.width * 2)}</td>
                </tr>,
                ...r.fields.map((f) => (
                  <tr key={r.name + f.name} data-field={r.name + ': ' + f.name}>
                    <td></td><td class="field">{f.name}</td><td class="mono"><b>{f.value}</b></td>
                  </tr>
                )),
              ])}
            </tbody>
          </table>
        </div>
      ))}
    </div>
  );
}

function Registers({ fn }) {
  const [filter, setFilter] = useState('');
  const regs = fn.barRegisters.filter((r) => !filter || r.name.toLowerCase().includes(filter.toLowerCase()));
  if (fn.barRegisters.length === 0) return <p class="muted">This function has no register file in BAR0.</p>;
  return (
    <div>
      <div class="filters">Register name <input value={filter} onInput={(e) => setFilter(e.target.value)} placeholder="e.g. TDT" /></div>
      <table id="registers">
        <thead><tr><th>BAR0 offset</th><th>Register</th><th>Value</th><th>Fields</th></tr></thead>
        <tbody>
          {regs.map((r) => (
            <tr key={r.offset + r.name} data-register={r.name}>
              <td class="mono">0x{hex(r.offset, 5)}</td>
              <td>{r.name}{r.alias ? <span class="muted"> (alias)</span> : null}{r.computed ? <span class="muted"> (computed on read)</span> : null}</td>
              <td class="mono">0x{hex(r.value, 8)}</td>
              <td class="muted">{r.fields.filter((f) => f.value).map((f) => `${f.name}=${f.value}`).join(' ')}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Rings({ fn }) {
  if (fn.rings.length === 0) return <p class="muted">No queue of this function has a ring programmed.</p>;
  return (
    <div id="rings">
      {fn.rings.map((r) => (
        <section key={r.direction + r.queue}>
          <h2>{r.direction.toUpperCase()} queue {r.queue} {r.enabled ? '' : <span class="muted">(disabled)</span>}</h2>
          <p class="mono">base {r.base} length {r.length} ({r.length / 16} descriptors) head {r.head} tail {r.tail}</p>
          {r.note && <p class="muted">{r.note}</p>}
          <table>
            <tbody>
              {r.descriptors.map((d) => (
                <tr key={d.index}>
                  <td class="mono">[{d.index}]</td><td class="mono muted">{d.iova}</td><td>{d.owner}</td><td class="mono">{d.decoded}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      ))}
    </div>
  );
}

function Msix({ fn }) {
  if (fn.msix.length === 0) return <p class="muted">This function has no MSI-X table.</p>;
  return (
    <div id="msix">
      <p>MSI-X Enable <b>{fn.msixEnabled ? 1 : 0}</b>, Function Mask <b>{fn.msixFunctionMask ? 1 : 0}</b></p>
      <table>
        <thead><tr><th>Vector</th><th>Message Address</th><th>Message Data</th><th>Mask</th><th>Pending (PBA)</th></tr></thead>
        <tbody>
          {fn.msix.map((e) => (
            <tr key={e.vector} data-vector={e.vector}>
              <td>{e.vector}</td><td class="mono">{e.address}</td><td class="mono">0x{hex(e.data, 8)}</td><td>{e.masked ? 1 : 0}</td><td>{e.pending ? 1 : 0}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function Vtd({ iommu, sel, setSel }) {
  const [walk, setWalk] = useState(sel.walk || sel.bdf);
  const [iova, setIova] = useState(sel.iova || '0x0');
  return (
    <div id="vtd">
      <p>Translation <b id="vtd-enabled">{iommu.translationEnabled ? 'enabled' : 'disabled'}</b>, queued invalidation {iommu.queuedInvalidationEnabled ? 'on' : 'off'}, root table <span class="mono">{iommu.rootTable}</span>, FSTS <span class="mono">0x{hex(iommu.faultStatus, 8)}</span></p>
      <h2>Fault records</h2>
      <table id="faults">
        <thead><tr><th>#</th><th>F</th><th>Source</th><th>Type</th><th>Reason</th><th>Page address</th></tr></thead>
        <tbody>
          {iommu.faultRecords.filter((f) => f.fault).map((f) => (
            <tr key={f.index} class="bad" data-fault={f.index}>
              <td>{f.index}</td><td>1</td><td class="mono">{f.sourceId}</td><td>{f.write ? 'write' : 'read'}</td>
              <td>0x{hex(f.reason, 2)} {f.reasonText}</td><td class="mono">{f.pageAddress}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {iommu.faultRecords.every((f) => !f.fault) && <p class="muted">No fault recorded.</p>}
      <h2>Page walk</h2>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); setSel({ walk, iova }); }}>
        Requester <input id="walk-bdf" value={walk} onInput={(e) => setWalk(e.target.value)} size="8" />
        IOVA <input id="walk-iova" value={iova} onInput={(e) => setIova(e.target.value)} size="18" />
        <button type="submit">Walk</button>
      </form>
      {iommu.walk && (
        <div id="walk">
          <p>{iommu.walk.rid} IOVA <span class="mono">{iommu.walk.iova}</span>: <b>{iommu.walk.result}</b>{iommu.walk.faultReason ? ` (${iommu.walk.faultReason})` : ''}{iommu.walk.result !== 'fault' ? <span class="mono"> &rarr; {iommu.walk.translated}</span> : null}</p>
          <table>
            <tbody>
              {iommu.walk.steps.map((s) => <tr key={s.step}><td>{s.step}</td><td class="mono muted">{s.address}</td><td class="mono">{s.value}</td><td>{s.decoded}</td></tr>)}
            </tbody>
          </table>
        </div>
      )}
      <h2>IOTLB <span class="muted">({iommu.iotlb.length} of {iommu.iotlbCapacity}; hits {iommu.iotlbHits}, misses {iommu.iotlbMisses}, context fetches {iommu.contextFetches})</span></h2>
      <table id="iotlb">
        <thead><tr><th>Source</th><th>DID</th><th>IOVA</th><th>Size</th><th>Page</th><th>R/W</th></tr></thead>
        <tbody>
          {iommu.iotlb.map((e, i) => <tr key={i}><td class="mono">{e.sourceId}</td><td>{e.domainId}</td><td class="mono">{e.iova}</td><td>{e.pageSize}</td><td class="mono">{e.pageBase}</td><td>{e.read ? 'R' : '-'}{e.write ? 'W' : '-'}</td></tr>)}
        </tbody>
      </table>
    </div>
  );
}

function Trace({ trace, filter, setFilter }) {
  const [q, setQ] = useState(filter.q);
  const [tbdf, setTbdf] = useState(filter.tbdf);
  const toggle = (k) => {
    const set = new Set(filter.kinds ? filter.kinds.split(',') : []);
    if (set.has(k)) set.delete(k); else set.add(k);
    setFilter({ ...filter, kinds: [...set].join(',') });
  };
  return (
    <div>
      <div class="filters">
        {KINDS.map((k) => <label key={k}><input type="checkbox" checked={filter.kinds.split(',').includes(k)} onChange={() => toggle(k)} />{k}</label>)}
        <span class="muted">(none checked = all)</span>
      </div>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); setFilter({ ...filter, q, tbdf }); }}>
        Function <input value={tbdf} onInput={(e) => setTbdf(e.target.value)} size="8" placeholder="bb:dd.f" />
        Text <input value={q} onInput={(e) => setQ(e.target.value)} placeholder="e.g. TDT" />
        <button type="submit">Filter</button>
      </form>
      <p class="muted">{trace.seen} events seen since the view opened, {trace.missed} lost; showing the last {trace.lines.length}</p>
      <pre class="trace" id="trace">{trace.lines.map((l) => l.line).join('\n')}</pre>
    </div>
  );
}

function Violations({ violations }) {
  if (!violations.checkerOn) return <p class="muted">The driver-conduct checker is off (serve --check off).</p>;
  if (violations.violations.length === 0) return <p id="violations">No violation.</p>;
  return (
    <table id="violations">
      <thead><tr><th>#</th><th>Rule</th><th>Function</th><th>What happened</th><th>Spec</th><th>Hint</th></tr></thead>
      <tbody>
        {violations.violations.map((v) => (
          <tr key={v.sequence} class={v.severity === 'Error' ? 'bad' : ''}>
            <td>{v.sequence}</td><td class="mono">{v.rule}</td><td class="mono">{v.bdf}</td><td>{v.event}<br /><span class="muted">{v.outcome}</span></td><td>{v.spec}</td><td>{v.hint}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// Rates of the counters (per second, between pushes) with a small uPlot chart per series.
function Counters({ counters }) {
  const hist = useRef({ t: [], frames: [], irq: [], dma: [], last: null });
  const el = useRef(null);
  const plot = useRef(null);
  const total = counters.reduce((a, c) => ({ frames: a.frames + c.frames, irq: a.irq + c.interrupts, dma: a.dma + c.dmaBytes }), { frames: 0, irq: 0, dma: 0 });
  const now = Date.now() / 1000;
  const h = hist.current;
  if (h.last && now - h.last.t > 0.05) {
    const dt = now - h.last.t;
    h.t.push(now); h.frames.push((total.frames - h.last.frames) / dt); h.irq.push((total.irq - h.last.irq) / dt); h.dma.push((total.dma - h.last.dma) / dt);
    if (h.t.length > 300) { h.t.shift(); h.frames.shift(); h.irq.shift(); h.dma.shift(); }
  }
  if (!h.last || now - h.last.t > 0.05) h.last = { t: now, ...total };
  useEffect(() => {
    if (!el.current) return;
    if (!plot.current) {
      plot.current = new uPlot({
        width: 640, height: 200, title: 'Rates (all functions)',
        series: [{}, { label: 'frames/s', stroke: '#0b62c4' }, { label: 'interrupts/s', stroke: '#b3261e' }, { label: 'DMA KiB/s', stroke: '#1a7f37' }],
        axes: [{}, {}],
      }, [[], [], [], []], el.current);
    }
    plot.current.setData([h.t, h.frames, h.irq, h.dma.map((v) => v / 1024)]);
  });
  useEffect(() => () => plot.current && plot.current.destroy(), []);
  return (
    <div>
      <table class="counters" id="counters">
        <thead><tr><th>Function</th><th>Frames</th><th>Frame bytes</th><th>Interrupts</th><th>DMA bytes</th><th>Faults</th></tr></thead>
        <tbody>
          {counters.map((c) => <tr key={c.bdf} data-bdf={c.bdf}><td>{c.bdf}</td><td>{c.frames}</td><td>{c.frameBytes}</td><td>{c.interrupts}</td><td>{c.dmaBytes}</td><td>{c.faults}</td></tr>)}
        </tbody>
      </table>
      <p class="muted">Counted since the view opened (events of the last open page keep counting for 10 s after it closes).</p>
      <div ref={el} id="rate-chart"></div>
    </div>
  );
}

function App() {
  const [sel, setSelState] = useState(readHash);
  const [filter, setFilter] = useState({ kinds: '', tbdf: '', q: '' });
  const setSel = (patch) => setSelState((s) => { const n = { ...s, ...patch }; writeHash(n); return n; });
  const [data, status, error] = useUpdates({ bdf: sel.bdf, walk: sel.walk, iova: sel.iova, kinds: filter.kinds, tbdf: filter.tbdf, q: filter.q, limit: '300' });
  const fn = data && data.function;
  const functionTabs = ['config', 'registers', 'rings', 'msix'];
  let body = <p class="muted">Waiting for the server…</p>;
  if (data) {
    if (functionTabs.includes(sel.tab) && !fn) body = <p class="muted">{sel.bdf ? `No function answers at ${sel.bdf} now.` : 'Select a function in the tree.'}</p>;
    else if (sel.tab === 'config') body = <div class="cfg"><HexGrid fn={fn} /><Decoded groups={fn.groups} /></div>;
    else if (sel.tab === 'registers') body = <Registers fn={fn} />;
    else if (sel.tab === 'rings') body = <Rings fn={fn} />;
    else if (sel.tab === 'msix') body = <Msix fn={fn} />;
    else if (sel.tab === 'vtd') body = <Vtd iommu={data.iommu} sel={sel} setSel={setSel} />;
    else if (sel.tab === 'trace') body = <Trace trace={data.trace} filter={filter} setFilter={setFilter} />;
    else if (sel.tab === 'violations') body = <Violations violations={data.violations} />;
    else if (sel.tab === 'counters') body = <Counters counters={data.counters} />;
  }
  return (
    <div>
      <header>
        <h1>PcieEmu live view</h1>
        <span class={'status ' + status} id="status">{status === 'live' ? 'live' : status === 'down' ? 'disconnected (retrying)' : 'connecting'}</span>
        {error && <span class="bad">{error}</span>}
        <span class="muted">{fn ? `${fn.bdf} ${fn.name}` : ''}</span>
      </header>
      <div class="layout">
        <aside>{data && <Tree topology={data.topology} selected={sel.bdf} onSelect={(bdf) => setSel({ bdf })} />}</aside>
        <main>
          <nav class="tabs">
            {TABS.map((t) => <button key={t} id={'tab-' + t} class={t === sel.tab ? 'active' : ''} onClick={() => setSel({ tab: t })}>{TAB_NAMES[t]}</button>)}
          </nav>
          {body}
        </main>
      </div>
    </div>
  );
}

render(<App />, document.getElementById('app'));
