/* memtrim HTML report: draws the page from the JSON in #memtrim-data.
 * Everything that comes from the profiled program is put in the page as text
 * (textContent, title, createTextNode), never as markup. */
(function () {
  "use strict";

  var started = window.performance ? performance.now() : 0;
  window.addEventListener("error", function (event) {
    document.body.setAttribute("data-error", String(event.message));
  });

  var D = JSON.parse(document.getElementById("memtrim-data").textContent);
  var VIEWS = ["peak", "at_exit", "allocated"];
  var VIEW_NAMES = D.view_labels; // peak: "Live at the peak", at_exit: "Still allocated at exit"...
  var VIEW_ALIASES = { leaks: "at_exit" }; // addresses of reports made before the view's rename
  var VIEW_VERB = {
    peak: "live at the peak",
    at_exit: "still allocated at exit",
    allocated: "allocated over the run",
  };
  var ROW = 20; // flame graph row height, px
  var TABLE_FIRST = 50; // top lines shown before "show more"
  var state = { view: "peak", zoom: 0, search: "", pick: -1, shown: TABLE_FIRST, open: {}, fileSort: "bytes" };
  var trees = {};

  // ------------------------------------------------------------ helpers

  function el(tag, props, children) {
    var node = document.createElement(tag);
    if (props) {
      for (var key in props) {
        if (key === "text") node.textContent = props[key];
        else if (key === "cls") node.className = props[key];
        else if (key === "title") node.title = props[key];
        else node.setAttribute(key, props[key]);
      }
    }
    (children || []).forEach(function (child) {
      if (child === null || child === undefined) return;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    });
    return node;
  }

  var SVGNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVGNS, tag);
    for (var key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function human(n) {
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    var sign = n < 0 ? "-" : "";
    n = Math.abs(n);
    var i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i++;
    }
    if (i === 0) return sign + Math.round(n) + " B";
    return sign + (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2)) + " " + units[i];
  }
  function exact(n) {
    return Math.round(n).toLocaleString("en-US") + " bytes";
  }
  function count(n) {
    return Math.round(n).toLocaleString("en-US");
  }
  function pct(part, whole) {
    if (!whole) return "–";
    var p = (100 * part) / whole;
    if (p >= 10) return p.toFixed(0) + "%";
    if (p >= 0.1) return p.toFixed(1) + "%";
    return p > 0 ? "<0.1%" : "0%";
  }
  function seconds(t) {
    if (t >= 100) return t.toFixed(0) + " s";
    if (t >= 1) return t.toFixed(2) + " s";
    if (t >= 0.01) return t.toFixed(3) + " s";
    return (t * 1000).toFixed(t >= 0.001 ? 1 : 2) + " ms";
  }
  function str(i) {
    return D.strings[i];
  }

  // frames: [file string, function string, line]
  function frameFile(f) {
    return str(D.frames[f][0]);
  }
  function frameFunc(f) {
    return str(D.frames[f][1]);
  }
  function frameLine(f) {
    return D.frames[f][2];
  }
  function source(f) {
    var lines = D.sources[String(D.frames[f][0])];
    return (lines && lines[String(D.frames[f][2])]) || "";
  }

  // A path as "dir/" + "name", with the standard library and installed
  // packages shortened.
  function splitPath(path) {
    var m = /[\\/](?:site|dist)-packages[\\/](.*)$/.exec(path);
    if (m) return { dir: "…/site-packages/", name: m[1] };
    m = /[\\/]lib[\\/](python3\.\d+)[\\/](.*)$/.exec(path);
    if (m) return { dir: "…/" + m[1] + "/", name: m[2] };
    var cut = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
    return { dir: path.slice(0, cut + 1), name: path.slice(cut + 1) };
  }
  function shortPath(path) {
    var p = splitPath(path);
    return (p.dir.indexOf("…") === 0 ? p.dir : "") + p.name;
  }
  function fileKind(path) {
    if (/[\\/](?:site|dist)-packages[\\/]/.test(path)) return "package";
    if (path.indexOf("<frozen") === 0 || /[\\/]lib[\\/]python3\.\d+[\\/]/.test(path)) return "stdlib";
    if (path.charAt(0) === "<") return "other";
    return "program";
  }
  function hash(text) {
    var h = 2166136261;
    for (var i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 16777619);
    }
    return h >>> 0;
  }
  var HUES = { program: [8, 42], package: [198, 232], stdlib: [150, 178], other: [270, 300] };
  var SATS = { program: 78, package: 52, stdlib: 36, other: 35 };
  function colour(path, func) {
    var kind = fileKind(path);
    var range = HUES[kind];
    var h = range[0] + (hash(path) % (range[1] - range[0] + 1));
    var l = 62 + (hash(func) % 14);
    return "hsl(" + h + "," + SATS[kind] + "%," + l + "%)";
  }

  function exitText(exit) {
    if (!exit || typeof exit !== "object") return { text: "not recorded", bad: null };
    var kind = String(exit.kind || "exit");
    var code = exit.code;
    var message = exit.message ? String(exit.message) : "";
    if (kind === "exit") return { text: "exit status " + code, bad: code !== 0 };
    if (kind === "os._exit") return { text: "os._exit(" + code + ")", bad: code !== 0 };
    if (kind === "limit") return { text: "--limit reached: " + (message || "MemoryError"), bad: true };
    if (kind === "oom") return { text: "out of memory: " + (message || "MemoryError"), bad: true };
    if (kind === "signal") return { text: "killed by " + (message || "signal " + code), bad: true };
    if (kind === "exception") return { text: message || "exception", bad: true, small: "uncaught exception, exit status " + code };
    return { text: kind + (message ? ": " + message : ""), bad: !!code };
  }

  function commandText(meta) {
    var command = meta.command;
    if (Array.isArray(command)) return command.map(String).join(" ");
    return command === undefined || command === null ? "" : String(command);
  }

  // ------------------------------------------------------------- header

  function fact(label, value, small, title, cls) {
    return el("div", { cls: "fact" + (cls ? " " + cls : "") }, [
      el("dt", { text: label }),
      el("dd", title ? { title: title } : null, [value, small ? el("small", { text: small }) : null]),
    ]);
  }

  function renderHeader() {
    var meta = D.meta || {};
    var header = document.getElementById("header");
    var sampled = !D.exact;
    var rate = meta.sample_bytes ? human(meta.sample_bytes) : "?";
    var exit = exitText(meta.exit);
    var duration = typeof meta.duration === "number" ? meta.duration : 0;
    var about = ["Python " + (meta.python || "?")];
    if (meta.pid !== undefined) about.push("pid " + meta.pid);
    if (meta.platform) about.push(String(meta.platform));
    if (typeof meta.started === "number") about.push(new Date(meta.started * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC");
    header.appendChild(
      el("div", { cls: "brand" }, [
        el("h1", null, [el("span", { cls: "logo", text: "memtrim" }), " run report"]),
        el("span", { cls: "note", text: about.join(" · ") }),
      ])
    );
    header.appendChild(el("div", { cls: "command", id: "command", text: commandText(meta) }));
    var gaps = meta.stack_gaps;
    var peakAt = "at " + seconds(D.peak_time) + (duration ? " of " + seconds(duration) : "");
    var allocated = D.views.allocated.whole;
    header.appendChild(
      el("dl", { cls: "facts" }, [
        fact("Peak", human(D.peak_bytes), peakAt, exact(D.peak_bytes)),
        fact(VIEW_NAMES.at_exit, human(D.end_bytes), "leaks, caches, globals", exact(D.end_bytes)),
        fact(VIEW_NAMES.allocated, human(allocated), count(D.views.allocated.whole_blocks) + " blocks", exact(allocated)),
        fact("Duration", seconds(duration), D.timeline.length + (D.timeline.length === 1 ? " timeline sample" : " timeline samples")),
        fact("Mode", sampled ? "sampled stacks" : "exact", sampled ? "1 stack per " + rate + " allocated" : (gaps ? "every block; some stacks cut" : "every block, full stack")),
        fact("Exit", el("span", { cls: "status", text: exit.text }), exit.small, exit.text, (exit.bad ? "bad" : exit.bad === false ? "good" : "") + (exit.text.length > 24 ? " long" : "")),
      ])
    );
    if (meta.partial) {
      var part = meta.partial;
      header.appendChild(
        el("p", {
          cls: "mode-note",
          id: "partial-note",
          text:
            (meta.exit && meta.exit.kind === "signal"
              ? "The program was ended by " + (meta.exit.message || "a signal") +
                " in a C call that did not return: this capture was written" +
                (typeof part.signal === "number" && typeof part.time === "number"
                  ? " " + (part.time - part.signal).toFixed(1) + " s after it came"
                  : " when the signal came")
              : "The program did not finish under memtrim (killed: SIGKILL, the OOM killer, a container's limit?): " +
                "this capture was written while it ran") +
            (typeof part.time === "number" ? ", at " + seconds(part.time) : "") +
            (part.reason ? ", " + part.reason + (part.limit ? " (" + part.limit + ")" : "") : "") +
            (typeof part.peak === "number" ? "; its peak then: " + human(part.peak) : "") + ".",
        })
      );
    }
    var together = meta.processes;
    if (together && together.count) {
      var parts = (together.at_peak || []).map(function (part) {
        return (part.file ? part.file + " (pid " + part.pid + ")" : "this process") + " " + human(part.heap);
      });
      header.appendChild(
        el("p", {
          cls: "mode-note",
          id: "processes-note",
          text:
            "This process and its " + count(together.count) + " forked " +
            (together.count === 1 ? "child" : "children") + " together: heap peak " + human(together.peak) +
            " at " + seconds(together.time) + " (" + parts.join(", ") + "). From their timelines: each " +
            "process's own peak is exact, their sum at the timeline's resolution. Each child's profile: " +
            "memtrim report FILE.",
        })
      );
    }
    if (gaps || meta.tree_full_blocks) {
      header.appendChild(
        el("p", {
          cls: "mode-note",
          id: "gap-note",
          text:
            "The call tree was full: " +
            (gaps ? (sampled ? "≈ " : "") + human(gaps.peak[0]) + " at the peak (" + human(gaps.allocated[0]) +
              " allocated over the run) have stacks with frames left out, drawn under “(frames left out: call tree full)”. " : "") +
            (meta.tree_full_blocks ? count(meta.tree_full_blocks) + " blocks were charged to an outer frame. " : "") +
            "Per-line figures stay exact.",
        })
      );
    }
    if (sampled) {
      header.appendChild(
        el("p", {
          cls: "mode-note",
          id: "mode-note",
          text:
            "Sampled mode: every total is exact (each line's bytes, the call-stack graph's total); " +
            "how a line's bytes split among the call stacks that reached it is estimated from " +
            "allocations sampled about once every " + rate + " allocated. A line no sample reached " +
            "is drawn under “(stack not sampled)”.",
        })
      );
    }
    var footer = document.getElementById("footer");
    footer.textContent = "Generated by memtrim" + (meta.memtrim ? " " + meta.memtrim : "") + ". This page is self-contained: it works offline and loads nothing.";
  }

  // ------------------------------------------------------------ view tabs

  function renderTabs() {
    var nav = document.getElementById("views");
    var box = el("div", { cls: "tabs", role: "tablist" });
    VIEWS.forEach(function (v) {
      var tab = el("button", { cls: "tab", type: "button", role: "tab", "data-view": v, title: VIEW_NAMES[v] + ": " + exact(D.views[v].whole) }, [
        VIEW_NAMES[v],
        el("b", { text: human(D.views[v].whole) }),
      ]);
      tab.addEventListener("click", function () {
        setView(v, true);
      });
      box.appendChild(tab);
    });
    nav.appendChild(box);
  }

  function markTabs() {
    var tabs = document.querySelectorAll("#views .tab");
    for (var i = 0; i < tabs.length; i++) {
      var on = tabs[i].getAttribute("data-view") === state.view;
      tabs[i].classList.toggle("active", on);
      tabs[i].setAttribute("aria-selected", on ? "true" : "false");
    }
  }

  // ------------------------------------------------------------- timeline

  function niceStep(span, ticks) {
    var raw = span / Math.max(ticks, 1);
    var mag = Math.pow(10, Math.floor(Math.log10(raw)));
    var norm = raw / mag;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  }

  function byteUnit(max) {
    if (max >= Math.pow(1024, 3) * 2) return { div: Math.pow(1024, 3), name: "GiB" };
    if (max >= 1024 * 1024 * 2) return { div: 1024 * 1024, name: "MiB" };
    if (max >= 2048) return { div: 1024, name: "KiB" };
    return { div: 1, name: "B" };
  }

  function renderTimeline() {
    var box = document.getElementById("timeline");
    box.textContent = "";
    var pts = D.timeline;
    if (!pts.length) {
      box.appendChild(el("p", { cls: "empty", text: "No timeline was recorded for this run." }));
      return;
    }
    var W = Math.max(box.clientWidth, 320);
    var H = 230;
    var m = { l: 62, r: 16, t: 22, b: 34 };
    var duration = (D.meta && typeof D.meta.duration === "number" && D.meta.duration) || 0;
    var tmax = Math.max(duration, pts[pts.length - 1][0], D.peak_time, 1e-6);
    var ymax = D.peak_bytes;
    pts.forEach(function (p) {
      ymax = Math.max(ymax, p[1], p[2]);
    });
    ymax = Math.max(ymax, 1);
    var unit = byteUnit(ymax);
    var ystep = niceStep(ymax / unit.div, 4) * unit.div;
    var ytop = Math.ceil(ymax / ystep) * ystep;
    var xstep = niceStep(tmax, Math.max(2, Math.floor((W - m.l - m.r) / 90)));
    function X(t) {
      return m.l + (t / tmax) * (W - m.l - m.r);
    }
    function Y(b) {
      return H - m.b - (b / ytop) * (H - m.t - m.b);
    }
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img", "aria-label": "heap and RSS over time" });
    var grid = svg("g", { class: "grid" });
    var axis = svg("g", { class: "axis" });
    for (var yv = 0; yv <= ytop + ystep / 2; yv += ystep) {
      grid.appendChild(svg("line", { x1: m.l, x2: W - m.r, y1: Y(yv), y2: Y(yv) }));
      var label = (yv / unit.div).toFixed(ystep / unit.div < 1 ? 1 : 0) + " " + unit.name;
      axis.appendChild(svg("text", { x: m.l - 8, y: Y(yv) + 4, "text-anchor": "end" }, label));
    }
    // a short run is told in milliseconds: every tick different, never "0.000 s"
    var tunit = tmax < 1 ? { mul: 1000, name: "ms" } : { mul: 1, name: "s" };
    var tstep = xstep * tunit.mul;
    var digits = tstep >= 1 ? 0 : Math.ceil(-Math.log10(tstep) - 1e-9);
    for (var i = 0, xv = 0; xv <= tmax + xstep / 1000; i++, xv = i * xstep) {
      grid.appendChild(svg("line", { x1: X(xv), x2: X(xv), y1: m.t, y2: H - m.b }));
      axis.appendChild(svg("text", { x: X(xv), y: H - m.b + 16, "text-anchor": "middle" }, (xv * tunit.mul).toFixed(digits) + " " + tunit.name));
    }
    axis.appendChild(svg("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }));
    axis.appendChild(svg("text", { x: W - m.r, y: H - 4, "text-anchor": "end", class: "tl-label" }, "time since start (" + tunit.name + ")"));
    root.appendChild(grid);
    root.appendChild(axis);

    var heap = pts.map(function (p) {
      return X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1);
    });
    root.appendChild(svg("path", { class: "heap-area", d: "M" + X(pts[0][0]).toFixed(1) + "," + Y(0) + "L" + heap.join("L") + "L" + X(pts[pts.length - 1][0]).toFixed(1) + "," + Y(0) + "Z" }));
    var hasRss = pts.some(function (p) {
      return p[2] > 0;
    });
    if (hasRss) {
      var rss = pts.map(function (p) {
        return X(p[0]).toFixed(1) + "," + Y(p[2]).toFixed(1);
      });
      root.appendChild(svg("path", { class: "rss-line", d: "M" + rss.join("L") }));
    }
    root.appendChild(svg("path", { class: "heap-line", d: "M" + heap.join("L") }));

    var px = X(D.peak_time);
    var py = Y(D.peak_bytes);
    root.appendChild(svg("line", { class: "peak-line", x1: px, x2: px, y1: m.t - 6, y2: H - m.b }));
    var dot = svg("circle", { class: "peak-dot", cx: px, cy: py, r: 4 });
    dot.appendChild(svg("title", {}, "peak: " + exact(D.peak_bytes) + " at " + seconds(D.peak_time)));
    root.appendChild(dot);
    var right = px > W - 220;
    root.appendChild(
      svg("text", { class: "peak-label", x: px + (right ? -8 : 8), y: m.t - 8 + 12, "text-anchor": right ? "end" : "start" },
        "peak " + human(D.peak_bytes) + " at " + seconds(D.peak_time))
    );

    var cursor = svg("line", { class: "cursor-line", x1: 0, x2: 0, y1: m.t, y2: H - m.b, visibility: "hidden" });
    root.appendChild(cursor);
    root.addEventListener("mousemove", function (event) {
      var rect = root.getBoundingClientRect();
      var t = ((event.clientX - rect.left - m.l) / (W - m.l - m.r)) * tmax;
      var p = nearest(pts, t);
      if (!p) return;
      cursor.setAttribute("x1", X(p[0]));
      cursor.setAttribute("x2", X(p[0]));
      cursor.setAttribute("visibility", "visible");
      showTip(event, [
        el("div", { cls: "tt-title", text: seconds(p[0]) }),
        tipTable([
          ["heap", human(p[1]) + "  (" + exact(p[1]) + ")"],
          ["RSS", p[2] ? human(p[2]) + "  (" + exact(p[2]) + ")" : "–"],
        ]),
      ]);
    });
    root.addEventListener("mouseleave", function () {
      cursor.setAttribute("visibility", "hidden");
      hideTip();
    });
    box.appendChild(root);
    box.appendChild(
      el("div", { cls: "tl-legend" }, [
        el("span", null, [el("span", { cls: "swatch heap" }), (D.meta && D.meta.native ? "heap: bytes allocated (Python's allocators and C libraries')" : "heap: bytes allocated through Python's allocators")]),
        hasRss ? el("span", null, [el("span", { cls: "swatch rss" }), "RSS: resident memory of the process"]) : null,
        el("span", null, [el("span", { cls: "swatch peak" }), "peak (" + exact(D.peak_bytes) + ")"]),
      ])
    );
  }

  function nearest(pts, t) {
    var lo = 0;
    var hi = pts.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (pts[mid][0] < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0 && Math.abs(pts[lo - 1][0] - t) < Math.abs(pts[lo][0] - t)) lo--;
    return pts[lo];
  }

  // -------------------------------------------------------------- tooltip

  var tip = document.getElementById("tooltip");
  function showTip(event, children) {
    tip.textContent = "";
    children.forEach(function (c) {
      if (c) tip.appendChild(c);
    });
    tip.hidden = false;
    var pad = 14;
    var w = tip.offsetWidth;
    var h = tip.offsetHeight;
    var x = event.clientX + pad;
    var y = event.clientY + pad;
    if (x + w > window.innerWidth - 4) x = Math.max(4, event.clientX - w - pad);
    if (y + h > window.innerHeight - 4) y = Math.max(4, event.clientY - h - pad);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  function hideTip() {
    tip.hidden = true;
  }
  function tipTable(rows) {
    return el(
      "table",
      null,
      rows.map(function (r) {
        return el("tr", null, [el("td", { text: r[0] }), el("td", { text: r[1] })]);
      })
    );
  }

  // ----------------------------------------------------------- the tree

  // Rows of D.views[v].tree.nodes (parent, frame, total, self) become
  // arrays; index 0 is the root "all", row r is index r + 1 (depth first).
  function tree(v) {
    if (trees[v]) return trees[v];
    var flat = D.views[v].tree.nodes;
    var n = flat.length / 4 + 1;
    var t = {
      n: n,
      parent: new Int32Array(n),
      frame: new Int32Array(n),
      total: new Float64Array(n),
      self: new Float64Array(n),
      hidden: new Float64Array(n),
      depth: new Int32Array(n),
      x: new Float64Array(n),
      size: new Int32Array(n),
      maxDepth: 0,
    };
    var cursor = new Float64Array(n);
    var kids = new Float64Array(n);
    t.parent[0] = -1;
    for (var i = 1; i < n; i++) {
      var o = (i - 1) * 4;
      var p = flat[o] + 1;
      t.parent[i] = p;
      t.frame[i] = flat[o + 1];
      t.total[i] = flat[o + 2];
      t.self[i] = flat[o + 3];
      if (p === 0) t.total[0] += t.total[i];
      t.depth[i] = t.depth[p] + 1;
      if (t.depth[i] > t.maxDepth) t.maxDepth = t.depth[i];
      t.x[i] = cursor[p];
      cursor[p] += t.total[i];
      cursor[i] = t.x[i];
      kids[p] += t.total[i];
    }
    for (i = 0; i < n; i++) t.size[i] = 1;
    for (i = n - 1; i > 0; i--) t.size[t.parent[i]] += t.size[i];
    for (i = 1; i < n; i++) t.hidden[i] = Math.max(0, t.total[i] - t.self[i] - kids[i]);
    trees[v] = t;
    return t;
  }

  function nodeName(t, i) {
    if (i === 0) return "all";
    var f = t.frame[i];
    if (f < 0) {
      var name = D.threads[-1 - f] === undefined ? "?" : String(D.threads[-1 - f]);
      return /^thread\b/i.test(name) ? name : "thread " + name;
    }
    return frameFunc(f);
  }
  function nodeWhere(t, i) {
    var f = t.frame[i];
    if (i === 0 || f < 0) return "";
    return frameFile(f) + ":" + frameLine(f);
  }
  function nodeColour(t, i) {
    var f = t.frame[i];
    if (i === 0) return "hsl(220,10%,78%)";
    if (f < 0) return "hsl(220,12%,86%)";
    return colour(frameFile(f), frameFunc(f));
  }
  // What the flame graph highlights: the frames of one line picked in a
  // table, or those whose function or file:line contain the search text.
  function currentNeedle() {
    if (state.pick >= 0) return { frame: state.pick };
    return state.search ? { text: state.search } : null;
  }
  function matches(t, i, needle) {
    if (!needle || i === 0) return false;
    if (needle.frame !== undefined) return t.frame[i] === needle.frame;
    return (nodeName(t, i) + "\u0000" + nodeWhere(t, i)).toLowerCase().indexOf(needle.text) >= 0;
  }

  function pickLine(f) {
    state.pick = state.pick === f ? -1 : f;
    state.search = "";
    document.getElementById("flame-search").value = "";
    drawFlame();
    markPicked();
    if (state.pick >= 0) document.getElementById("flame-section").scrollIntoView({ block: "nearest" });
  }
  function markPicked() {
    var rows = document.querySelectorAll("tr[data-frame]");
    for (var i = 0; i < rows.length; i++) {
      rows[i].classList.toggle("picked", Number(rows[i].getAttribute("data-frame")) === state.pick);
    }
  }

  // --------------------------------------------------------- flame graph

  function renderFlameTools() {
    var tools = document.getElementById("flame-tools");
    var search = el("input", { type: "search", id: "flame-search", placeholder: "Highlight function or file…", "aria-label": "highlight frames" });
    search.addEventListener("input", function () {
      state.search = search.value.trim().toLowerCase();
      state.pick = -1;
      markPicked();
      drawFlame();
    });
    var reset = el("button", { type: "button", id: "flame-reset", text: "Reset zoom" });
    reset.addEventListener("click", function () {
      zoom(0);
    });
    tools.appendChild(el("span", { cls: "match-info", id: "flame-match" }));
    tools.appendChild(search);
    tools.appendChild(reset);
    var box = document.getElementById("flame");
    box.addEventListener("click", function (event) {
      var node = event.target.closest(".fg-n");
      if (node) zoom(Number(node.getAttribute("data-i")));
    });
    box.addEventListener("mousemove", function (event) {
      var node = event.target.closest(".fg-n");
      if (node) showTip(event, flameTip(Number(node.getAttribute("data-i"))));
      else hideTip();
    });
    box.addEventListener("mouseleave", hideTip);
    document.addEventListener("keydown", function (event) {
      if (event.key !== "Escape") return;
      if (state.pick >= 0) pickLine(state.pick);
      else if (state.zoom) zoom(0);
    });
    document.addEventListener("click", function (event) {
      var row = event.target.closest("tr[data-frame]");
      if (row) pickLine(Number(row.getAttribute("data-frame")));
    });
    var legend = document.getElementById("flame-legend");
    [
      ["your code", colour("/app/x.py", "f")],
      ["installed packages", colour("/x/site-packages/p.py", "f")],
      ["standard library", colour("/usr/lib/python3.12/x.py", "f")],
      ["thread root", "hsl(220,12%,86%)"],
    ].forEach(function (item) {
      var chip = el("span", { cls: "chip" });
      chip.style.background = item[1];
      legend.appendChild(el("span", null, [chip, item[0]]));
    });
    legend.appendChild(el("span", { text: "Width: bytes. Top: outermost call. Click a frame to zoom in, Esc or “all” to zoom out." }));
  }

  function flameTip(i) {
    var t = tree(state.view);
    var estimated = !D.exact && i > 0; // the whole is exact: its split among stacks is not
    var prefix = estimated ? "≈ " : "";
    var rows = [
      ["bytes", prefix + human(t.total[i]) + "  (" + prefix + exact(t.total[i]) + ")"],
      ["share", pct(t.total[i], t.total[0]) + " of all" + (state.zoom && i !== state.zoom ? ", " + pct(t.total[i], t.total[state.zoom]) + " of the zoomed frame" : "")],
    ];
    if (i > 0) rows.push(["in the frame itself", prefix + human(t.self[i])]);
    if (t.hidden[i] > 0) rows.push(["in calls too small to draw", prefix + human(t.hidden[i])]);
    var f = t.frame[i];
    var src = i > 0 && f >= 0 ? source(f) : "";
    return [
      el("div", { cls: "tt-title", text: nodeName(t, i) }),
      nodeWhere(t, i) ? el("div", { cls: "tt-where", text: nodeWhere(t, i) }) : null,
      src ? el("div", { cls: "tt-src", text: src }) : null,
      tipTable(rows),
    ];
  }

  function zoom(i) {
    state.zoom = i;
    drawFlame();
  }

  function drawFlame() {
    var v = state.view;
    var t = tree(v);
    var box = document.getElementById("flame");
    var path = document.getElementById("flame-path");
    var info = D.views[v].tree;
    document.getElementById("flame-title").textContent = "Call stacks: " + VIEW_VERB[v];
    document.getElementById("flame-note").textContent =
      (D.exact ? "Exact: " : "Exact total, split among stacks by sampling: ") + human(t.total[0]) + " in " +
      count(info.nodes_with_bytes) + (info.nodes_with_bytes === 1 ? " call-tree node" : " call-tree nodes") +
      (info.shown < info.nodes_with_bytes ? "; the " + count(info.shown) + " largest are drawn, smaller ones are counted in their caller" : "") + ".";
    box.textContent = "";
    path.textContent = "";
    document.getElementById("flame-reset").disabled = !state.zoom;
    if (!t.total[0]) {
      box.style.height = "auto";
      box.appendChild(el("p", { cls: "empty", text: "Nothing " + VIEW_VERB[v] + " in the call stacks." }));
      document.getElementById("flame-match").textContent = "";
      return;
    }
    if (state.zoom >= t.n) state.zoom = 0;
    var z = state.zoom;
    var W = Math.max(box.clientWidth, 200);
    var scale = W / t.total[z];
    var x0 = t.x[z];
    var frag = document.createDocumentFragment();
    var needle = currentNeedle();
    var deepest = t.depth[z];
    var chain = [];
    for (var a = t.parent[z]; a >= 0; a = t.parent[a]) chain.push(a);
    chain.reverse().forEach(function (a) {
      frag.appendChild(flameBox(t, a, 0, W, "anc", needle));
    });
    var end = z + t.size[z];
    for (var i = z; i < end; ) {
      var w = t.total[i] * scale;
      if (w < 0.4) {
        i += t.size[i];
        continue;
      }
      frag.appendChild(flameBox(t, i, (t.x[i] - x0) * scale, w, "", needle));
      if (t.depth[i] > deepest) deepest = t.depth[i];
      i++;
    }
    box.style.height = (deepest + 1) * ROW + 2 + "px";
    box.appendChild(frag);
    renderCrumbs(t, chain.concat(z ? [z] : []), path);
    renderMatch(t, needle);
  }

  function flameBox(t, i, left, width, extra, needle) {
    var node = document.createElement("div");
    var cls = "fg-n" + (extra ? " " + extra : "");
    if (needle) cls += matches(t, i, needle) ? " match" : " dim";
    node.className = cls;
    node.setAttribute("data-i", i);
    node.style.left = left.toFixed(2) + "px";
    node.style.top = t.depth[i] * ROW + "px";
    node.style.width = Math.max(width - 0, 0.4).toFixed(2) + "px";
    node.style.background = nodeColour(t, i);
    if (width > 26) {
      node.textContent = nodeName(t, i);
      var f = t.frame[i];
      if (i > 0 && f >= 0 && width > 90) {
        node.appendChild(el("span", { cls: "fg-where", text: " " + shortPath(frameFile(f)) + ":" + frameLine(f) }));
      }
    }
    return node;
  }

  function renderCrumbs(t, chain, path) {
    if (!state.zoom) return;
    path.appendChild(document.createTextNode("Zoomed: "));
    chain.forEach(function (a, k) {
      if (k) path.appendChild(document.createTextNode(" › "));
      var link = el("a", { text: nodeName(t, a), title: nodeWhere(t, a) || "everything" });
      link.addEventListener("click", function () {
        zoom(a);
      });
      path.appendChild(link);
    });
  }

  function renderMatch(t, needle) {
    var out = document.getElementById("flame-match");
    if (!needle) {
      out.textContent = "";
      return;
    }
    var what = needle.frame !== undefined ? shortPath(frameFile(needle.frame)) + ":" + frameLine(needle.frame) + " " : "";
    var sum = 0;
    for (var i = 1; i < t.n; ) {
      if (matches(t, i, needle)) {
        sum += t.total[i];
        i += t.size[i]; // nested matches are already counted
      } else i++;
    }
    out.textContent = what + "highlighted: " + (D.exact ? "" : "≈ ") + human(sum) + " (" + pct(sum, t.total[0]) + " of the stacks)";
  }

  // ---------------------------------------------------------- top lines

  function whereCell(f) {
    var path = frameFile(f);
    return el("td", { cls: "where", title: path + ":" + frameLine(f) }, [shortPath(path), el("span", { cls: "lineno", text: ":" + frameLine(f) })]);
  }

  function bytesCell(bytes, whole) {
    var bar = el("span", { cls: "bar" });
    bar.style.width = Math.max(0, Math.min(100, (100 * bytes) / (whole || 1))).toFixed(1) + "%";
    return el("td", { cls: "num bytes", title: exact(bytes) }, [bar, el("span", { text: human(bytes) })]);
  }

  function colgroup(names) {
    return el(
      "colgroup",
      null,
      names.map(function (n) {
        return el("col", { cls: n ? "col-" + n : "" });
      })
    );
  }

  function renderLines() {
    var v = state.view;
    var view = D.views[v];
    var box = document.getElementById("lines");
    box.textContent = "";
    document.getElementById("lines-title").textContent = "Top lines: " + VIEW_VERB[v];
    var note = count(view.lines) + " lines, " + human(view.total) + " in all (exact per line). Click a line to highlight its stacks in the graph.";
    if (view.unattributed > 0) {
      var why = (view.unattributed_why || []).map(function (u) {
        return human(u[2]) + " " + u[0] + (u[0] === "allocated without the GIL" ? "" : " (thread " + u[1] + ")");
      });
      note += " Not in any line: " + why.join("; ") + ".";
    }
    document.getElementById("lines-note").textContent = note;
    if (!view.sites.length) {
      box.appendChild(el("p", { cls: "empty", text: "No line of Python code has bytes " + VIEW_VERB[v] + "." }));
      return;
    }
    var rows = view.sites.slice(0, state.shown);
    // a "native" column only when C libraries allocated (s[3]: bytes from C allocators)
    var native = view.sites.some(function (s) { return s[3] > 0; });
    var body = el("tbody");
    rows.forEach(function (s) {
      var f = s[0];
      body.appendChild(
        el("tr", { "data-frame": f, cls: f === state.pick ? "picked" : "" }, [
          bytesCell(s[1], view.sites[0][1]),
          el("td", { cls: "num", text: count(s[2]) }),
          el("td", { cls: "num", text: pct(s[1], view.total), title: ((100 * s[1]) / (view.total || 1)).toFixed(3) + "% of " + exact(view.total) }),
          native ? el("td", { cls: "num", text: s[3] ? human(s[3]) : "-", title: s[3] ? exact(s[3]) + " from C allocators (malloc, mmap)" : "no native bytes" }) : null,
          whereCell(f),
          el("td", { cls: "func", text: frameFunc(f), title: frameFunc(f) }),
          el("td", { cls: "src", text: source(f), title: source(f) }),
        ])
      );
    });
    var heads = native ? ["bytes", "blocks", "share", "native", "file:line", "function", "source"] : ["bytes", "blocks", "share", "file:line", "function", "source"];
    var numeric = native ? 4 : 3;
    var table = el("table", { cls: "rows", id: "lines-table" }, [
      colgroup(native ? ["bytes", "blocks", "share", "share", "where", "func", ""] : ["bytes", "blocks", "share", "where", "func", ""]),
      el("thead", null, [el("tr", null, heads.map(function (h, k) {
        return el("th", { cls: k < numeric ? "num" : "", text: h });
      }))]),
      body,
    ]);
    box.appendChild(table);
    if (view.sites.length > state.shown) {
      var more = el("button", { cls: "more", type: "button", text: "Show all " + view.sites.length + " lines" + (view.lines > view.sites.length ? " in this report" : "") });
      more.addEventListener("click", function () {
        state.shown = view.sites.length;
        renderLines();
      });
      box.appendChild(more);
    }
    if (view.lines > view.sites.length && state.shown >= view.sites.length) {
      box.appendChild(el("p", { cls: "note", text: count(view.lines - view.sites.length) + " smaller lines are not in this report." }));
    }
  }

  // --------------------------------------------------------------- files

  function renderFiles() {
    var v = state.view;
    var view = D.views[v];
    var box = document.getElementById("files");
    box.textContent = "";
    document.getElementById("files-title").textContent = "By file: " + VIEW_VERB[v];
    var nfiles = view.files.length;
    document.getElementById("files-note").textContent =
      nfiles ? "Files by bytes; open one to see its lines with their source." : "";
    if (!nfiles) {
      box.appendChild(el("p", { cls: "empty", text: "No file has bytes " + VIEW_VERB[v] + "." }));
      return;
    }
    view.files.forEach(function (file) {
      box.appendChild(fileEntry(view, file));
    });
    if (view.file_count > nfiles) {
      var rest = view.total;
      view.files.forEach(function (file) {
        rest -= file[1];
      });
      box.appendChild(el("p", { cls: "note", text: count(view.file_count - nfiles) + " smaller files with " + human(rest) + " are not in this report." }));
    }
  }

  function fileEntry(view, file) {
    var path = str(file[0]);
    var parts = splitPath(path);
    var bar = el("span", { cls: "bar" });
    bar.style.width = Math.min(100, (100 * file[1]) / (view.files[0][1] || 1)).toFixed(1) + "%";
    var summary = el("summary", { title: path }, [
      el("span", { cls: "fsize", title: exact(file[1]) }, [bar, el("span", { text: human(file[1]) })]),
      el("span", { cls: "fshare", text: pct(file[1], view.total) }),
      el("span", { cls: "fname" }, [el("span", { cls: "dir", text: parts.dir }), parts.name]),
      el("span", { cls: "fcount", text: file[3] + (file[3] === 1 ? " line" : " lines") }),
    ]);
    var details = el("details", { cls: "file", "data-file": path }, [summary]);
    details.addEventListener("toggle", function () {
      if (details.open) {
        state.open[path] = true;
        if (details.children.length < 2) details.appendChild(fileLines(view, file));
      } else delete state.open[path];
    });
    if (state.open[path]) {
      details.open = true;
      details.appendChild(fileLines(view, file));
    }
    return details;
  }

  function fileLines(view, file) {
    var body = el("tbody");
    var top = file[4].length ? file[4][0][1] : 1;
    var shown = 0;
    var rows = file[4].slice();
    if (state.fileSort === "line") {
      rows.sort(function (a, b) {
        return frameLine(a[0]) - frameLine(b[0]) || b[1] - a[1];
      });
    }
    rows.forEach(function (s) {
      var f = s[0];
      shown += s[1];
      body.appendChild(
        el("tr", { "data-frame": f, cls: f === state.pick ? "picked" : "" }, [
          el("td", { cls: "num", text: String(frameLine(f)) }),
          bytesCell(s[1], top),
          el("td", { cls: "num", text: count(s[2]) }),
          el("td", { cls: "num", text: pct(s[1], view.total) }),
          el("td", { cls: "func", text: frameFunc(f), title: frameFunc(f) }),
          el("td", { cls: "src", text: source(f), title: source(f) }),
        ])
      );
    });
    var box = el("div", { cls: "file-lines" }, [
      el("table", { cls: "rows" }, [
        colgroup(["line", "bytes", "blocks", "share", "func", ""]),
        el("thead", null, [el("tr", null, ["line", "bytes", "blocks", "share", "function", "source"].map(function (h, k) {
          var th = el("th", { cls: k < 4 ? "num" : "", text: h });
          if (k < 2) {
            var key = k === 0 ? "line" : "bytes";
            th.className += " sortable" + (state.fileSort === key ? " sorted" : "");
            th.title = "sort the lines of every file by " + (k === 0 ? "line number" : "bytes");
            th.addEventListener("click", function () {
              state.fileSort = key;
              renderFiles();
            });
          }
          return th;
        }))]),
        body,
      ]),
    ]);
    if (file[3] > file[4].length) {
      box.appendChild(el("p", { cls: "note", text: (file[3] - file[4].length) + " smaller lines with " + human(file[1] - shown) + " are not in this report." }));
    }
    return box;
  }

  // ---------------------------------------------------------------- views

  function viewFromHash() {
    var m = /(?:^|[#&])view=([a-z_]+)/.exec(window.location.hash);
    var v = m ? VIEW_ALIASES[m[1]] || m[1] : null;
    return v && VIEWS.indexOf(v) >= 0 ? v : null;
  }

  function setView(v, remember) {
    if (VIEWS.indexOf(v) < 0) v = "peak";
    if (v !== state.view) {
      state.zoom = 0;
      state.pick = -1;
      state.shown = TABLE_FIRST;
    }
    state.view = v;
    document.body.setAttribute("data-view", v);
    markTabs();
    drawFlame();
    renderLines();
    renderFiles();
    if (remember && window.history && window.history.replaceState) {
      try {
        window.history.replaceState(null, "", "#view=" + v);
      } catch (e) {
        /* some browsers refuse it for file:// pages */
      }
    }
  }

  // ---------------------------------------------------------------- rss

  function rssTable(found, title) {
    var labels = D.rss_labels || {};
    var body = el("tbody");
    Object.keys(found.parts || {}).forEach(function (key) {
      var size = found.parts[key];
      if (!size) return;
      var note = (found.part_notes || {})[key] || "";
      body.appendChild(el("tr", null, [
        el("td", { cls: "num", text: human(size), title: exact(size) }),
        el("td", { cls: "num", text: size < 0 ? "-" + pct(-size, found.rss) : pct(size, found.rss) }),
        el("td", { cls: "wrap", text: labels[key] || key }),
        el("td", { cls: "src", text: note, title: note }),
      ]));
    });
    return el("div", { cls: "rss-block" }, [
      el("h3", { text: title + ": " + human(found.rss) }),
      el("table", { cls: "rows rss-rows" }, [
        el("thead", null, [el("tr", null, ["bytes", "share", "part", "note"].map(function (h, k) {
          return el("th", { cls: k < 2 ? "num" : "", text: h });
        }))]),
        body,
      ]),
      el("ul", { cls: "facts" }, (found.facts || []).map(function (f) { return el("li", { text: f }); })),
      el("p", { cls: "note", text: (found.notes || []).join(" ") }),
    ]);
  }

  function renderRss() {
    var saved = (D.meta && D.meta.rss) || {};
    var box = document.getElementById("rss");
    var section = document.getElementById("rss-section");
    box.textContent = "";
    if (!saved.peak && !saved.at_exit) {
      section.hidden = true;
      return;
    }
    document.getElementById("rss-note").textContent =
      "The resident memory (RSS) in parts that add up to it: Python objects, free space pymalloc and malloc keep, C libraries' memory, stacks, libraries and files. Near the peak: read when the heap last rose 5 % above the previous reading.";
    if (saved.peak) box.appendChild(rssTable(saved.peak, "Near the peak (heap " + human(saved.peak.heap || 0) + ")"));
    if (saved.at_exit) box.appendChild(rssTable(saved.at_exit, "At exit"));
  }

  // -------------------------------------------------------------- advice

  // The frame of the page whose file and line are these (-1: not in the report).
  function frameAt(file, line) {
    for (var i = 0; i < D.frames.length; i++) {
      if (D.frames[i][2] === line && str(D.frames[i][0]) === file) return i;
    }
    return -1;
  }

  function adviceEntry(a, k) {
    var f = a.filename ? frameAt(a.filename, a.lineno) : -1;
    var where = a.filename ? shortPath(a.filename) + ":" + a.lineno : (a.holder && a.holder[0]) || "line not known";
    var link = f >= 0
      ? el("button", { cls: "linkish", type: "button", text: where, title: "Show this line and its stacks (" + (a.when === "exit" ? "at exit" : "at the peak") + ")" })
      : el("span", { text: where, title: a.filename || "" });
    if (f >= 0) {
      link.addEventListener("click", function () {
        setView(a.when === "exit" ? "at_exit" : "peak", true);
        if (state.pick !== f) pickLine(f);
      });
    }
    var measured = { all: "measured on all of them", sample: "measured on a sample", computed: "computed" }[a.measured] || a.measured;
    if (a.measured === "sample" && a.error) measured += " (within " + (100 * a.error).toFixed(1) + " %)";
    var details = [
      el("p", { cls: "src", text: a.source || "" }),
      el("p", { text: count(a.count) + " \u00d7 " + a.type + ": " + human(a.bytes) + " \u2192 " + human(a.after) + " (" + measured + "; " + a.confidence + ")" }),
      el("p", { cls: "fix", text: "Fix: " + a.fix }),
      el("ul", { cls: "caveats" }, (a.caveats || []).map(function (c) { return el("li", { text: c }); })),
    ];
    if (a.holder && a.holder.length) details.push(el("p", { cls: "note", text: "Held by: " + a.holder.join(" \u2192 ") }));
    var box = el("details", { cls: "advice", id: "advice-" + k }, [
      el("summary", null, [
        el("span", { cls: "kind", text: a.kind }),
        el("span", { cls: "num saving", text: "saves " + human(a.saving), title: exact(a.saving) + " (" + exact(a.bytes) + " \u2192 " + exact(a.after) + ")" }),
        link,
        el("span", { cls: "short-fix", text: a.fix, title: a.fix }),
      ]),
      el("div", { cls: "advice-body" }, details),
    ]);
    if (k === 0) box.open = true;
    return box;
  }

  function renderAdvice() {
    var found = D.meta && D.meta.advice;
    var section = document.getElementById("advice-section");
    var box = document.getElementById("advice");
    box.textContent = "";
    if (!Array.isArray(found)) {
      section.hidden = true;
      return;
    }
    section.hidden = false;
    var run = D.meta.advice_run || {};
    document.getElementById("advice-note").textContent = found.length
      ? "What to change, largest saving first: each alternative was built from the program's own data (or computed, where said). Open an entry for the fix and what it costs; its line shows the stacks that allocated it."
      : "Nothing to change above " + human(run.threshold || 0) + ".";
    found.forEach(function (a, k) { box.appendChild(adviceEntry(a, k)); });
  }

  function start() {
    renderHeader();
    renderTabs();
    renderTimeline();
    renderRss();
    renderAdvice();
    renderFlameTools();
    setView(viewFromHash() || "peak", false);
    window.addEventListener("hashchange", function () {
      var v = viewFromHash();
      if (v && v !== state.view) setView(v, false);
    });
    var pending = 0;
    var lastWidth = window.innerWidth;
    window.addEventListener("resize", function () {
      if (window.innerWidth === lastWidth) return;
      lastWidth = window.innerWidth;
      clearTimeout(pending);
      pending = setTimeout(function () {
        renderTimeline();
        drawFlame();
      }, 120);
    });
    if (started) document.body.setAttribute("data-render-ms", String(Math.round(performance.now() - started)));
    document.body.setAttribute("data-ready", "1");
  }

  start();
})();
