import LoopTools

/// The admin console's page: every figure of the node in a table per section, filled
/// in and updated once a second from `/status.json` by a small inline script.
///
/// The page itself does not change from one request to the next: its figures are
/// placeholders, and only what the hosts table shows without the script (each host's
/// address, backend, and whether it is alive) makes it render again (`AdminConsole`
/// keeps the bytes). Rendered for every request with the figures of the moment, it cost
/// twelve times what nginx pays for the same bytes.
enum ConsolePage {
    /// What a figure shows until the script fills it in.
    static let placeholder = "…"

    /// Sections shown, in order, with their headings; others follow under their own names.
    static let sections: [(key: String, title: String)] = [
        ("loop", "Event loop"), ("server", "RPC server (UDP)"), ("tcp", "TCP server"), ("http", "HTTP"),
        ("node", "Node"),
        ("cluster", "Cluster"),
    ]

    /// The hosts table's columns: the key in each host's JSON and its heading.
    static let hostColumns: [(key: String, title: String)] = [
        ("id", "host"), ("address", "address"), ("backend", "backend"), ("alive", "alive"), ("rttMs", "RTT ms"),
        ("lastSeenMsAgo", "last seen ms ago"), ("deaths", "deaths"), ("downMs", "down ms"), ("pingsSent", "pings"),
        ("pingTimeouts", "timeouts"),
    ]

    /// The host columns the page shows as rendered: what the page is rendered again for.
    static let renderedHostColumns: Set<String> = ["id", "address", "backend", "alive"]

    /// The cluster's hosts, one row each (`serve --hosts`); empty for a lone node.
    static func hostsTable(_ stats: [(String, JSON)]) -> String {
        guard case .object(let cluster)? = stats.first(where: { $0.0 == "cluster" })?.1,
            case .array(let hosts)? = cluster.first(where: { $0.0 == "hosts" })?.1
        else { return "" }
        var html = "<section class=\"hosts\"><h2>Hosts</h2><table id=\"hosts\"><thead><tr>"
        for column in hostColumns { html += "<th>\(escape(column.title))</th>" }
        html += "</tr></thead><tbody>"
        for case .object(let host) in hosts {
            let value = { (key: String) in host.first { $0.0 == key }?.1 ?? .null }
            let alive = value("alive").description == "true"
            let isSelf = value("self").description == "true"
            html += "<tr class=\"\(alive ? "alive" : "dead")\(isSelf ? " self" : "")\">"
            for column in hostColumns {
                let shown = renderedHostColumns.contains(column.key) ? cell(value(column.key)) : placeholder
                html += "<td data-host-figure=\"\(escape(column.key))\">\(escape(shown))</td>"
            }
            html += "</tr>"
        }
        return html + "</tbody></table></section>"
    }

    /// A figure as the hosts table shows it: nothing for null (never heard from).
    static func cell(_ value: JSON) -> String {
        if case .null = value { return "–" }
        return text(value)
    }

    static func html(stats: JSON, token: String) -> String {
        guard case .object(let top) = stats else { return "" }
        let value = { (key: String) in top.first { $0.0 == key }?.1 }
        let backend = value("backend").map(text) ?? "?"
        var tables = ""
        let objects = top.compactMap { entry -> (String, [(String, JSON)])? in
            if case .object(let fields) = entry.1 { return (entry.0, fields) } else { return nil }
        }
        let ordered =
            sections.compactMap { section in objects.first { $0.0 == section.key }.map { (section.title, $0) } }
            + objects.filter { o in !sections.contains { $0.key == o.0 } }.map { ($0.0, $0) }
        for (title, (key, fields)) in ordered {
            tables += "<section><h2>\(escape(title))</h2><table id=\"table-\(escape(key))\">"
            for (name, figure) in fields {
                if case .array = figure { continue } // the hosts: a table of their own
                tables +=
                    "<tr><th>\(escape(name))</th><td data-figure=\"\(escape(key)).\(escape(name))\">\(placeholder)</td></tr>"
            }
            tables += "</table></section>"
        }
        return """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8">
            <meta name="admin-token" content="\(escape(token))">
            <title>loop-harness node · \(escape(backend))</title>
            <style>
            body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
            header{display:flex;gap:2em;align-items:baseline;flex-wrap:wrap}
            h1{font-size:1.4em;margin:0} h2{font-size:1em;margin:.2em 0 .4em}
            .badge{font-weight:bold;padding:.1em .5em;border-radius:.3em;background:#2a6;color:#fff}
            .badge.legacy{background:#a62}
            main{display:grid;grid-template-columns:repeat(auto-fill,minmax(17em,1fr));gap:1em;margin-top:1em}
            section{background:#fff;border:1px solid #ddd;border-radius:.4em;padding:.6em .8em}
            table{border-collapse:collapse;width:100%} th{text-align:left;font-weight:normal;color:#555}
            td{text-align:right;font-variant-numeric:tabular-nums} tr+tr{border-top:1px solid #eee}
            td.changed{background:#ffd}
            button{font-size:1em;padding:.4em 1em;border-radius:.3em;border:1px solid #a33;background:#c44;color:#fff;cursor:pointer}
            #save-status{margin-left:1em}
            section.hosts{margin-top:1em} section.hosts th{font-weight:bold;text-align:right}
            section.hosts td:nth-child(2),section.hosts th:nth-child(2){text-align:left}
            tr.dead td{color:#a22} tr.self td{font-weight:bold}
            </style></head>
            <body>
            <header>
            <h1>Node console</h1>
            <span>backend <span id="backend" class="badge \(escape(backend))">\(escape(backend))</span></span>
            <span>uptime <span id="uptime">\(placeholder)</span></span>
            <span>live updates <span id="updates">0</span></span>
            <span><button id="save-exit" type="button">Save &amp; Exit</button><span id="save-status"></span></span>
            </header>
            \(hostsTable(top))
            <main>\(tables)</main>
            <script>
            "use strict";
            const token = document.querySelector('meta[name="admin-token"]').content;
            let updates = 0;
            function show(value) { return typeof value === "number" && !Number.isInteger(value) ? value.toFixed(2) : String(value); }
            function uptime(ms) {
              const s = Math.floor(ms / 1000);
              return s < 60 ? s + " s" : Math.floor(s / 60) + " min " + (s % 60) + " s";
            }
            function apply(stats) {
              document.getElementById("uptime").textContent = uptime(stats.uptimeMs);
              for (const [section, fields] of Object.entries(stats)) {
                if (fields === null || typeof fields !== "object" || Array.isArray(fields)) continue;
                for (const [name, value] of Object.entries(fields)) {
                  if (value !== null && typeof value === "object") continue;
                  let cell = document.querySelector('td[data-figure="' + section + "." + name + '"]');
                  if (!cell) {
                    const table = document.getElementById("table-" + section);
                    if (!table) continue;
                    const row = table.insertRow();
                    const th = document.createElement("th");
                    th.textContent = name;
                    row.appendChild(th);
                    cell = row.insertCell();
                    cell.dataset.figure = section + "." + name;
                  }
                  const text = show(value);
                  cell.classList.toggle("changed", updates > 0 && cell.textContent !== text);
                  cell.textContent = text;
                }
              }
              if (stats.cluster && Array.isArray(stats.cluster.hosts)) showHosts(stats.cluster.hosts);
              document.getElementById("updates").textContent = String(++updates);
            }
            function showHosts(hosts) {
              const body = document.querySelector("#hosts tbody");
              if (!body) return;
              hosts.forEach((host, index) => {
                const row = body.rows[index] || body.insertRow();
                row.className = (host.alive ? "alive" : "dead") + (host.self ? " self" : "");
                const keys = [\(hostColumns.map { "\"\($0.key)\"" }.joined(separator: ", "))];
                keys.forEach((key, column) => {
                  const cell = row.cells[column] || row.insertCell();
                  const value = host[key];
                  const text = value === null || value === undefined ? "–" : show(value);
                  cell.classList.toggle("changed", updates > 0 && cell.textContent !== text && key !== "lastSeenMsAgo");
                  cell.textContent = text;
                });
              });
            }
            let stopped = false;
            async function refresh() {
              if (stopped) return;
              try {
                const response = await fetch("/status.json", { cache: "no-store" });
                if (response.ok) apply(await response.json());
              } catch (error) { /* the node may be gone; keep trying until Save & Exit */ }
              setTimeout(refresh, 1000);
            }
            document.getElementById("save-exit").addEventListener("click", async () => {
              const status = document.getElementById("save-status");
              status.textContent = "saving…";
              try {
                const response = await fetch("/save-exit", { method: "POST", headers: { "X-Admin-Token": token } });
                const reply = await response.json();
                if (reply.ok) {
                  stopped = true;
                  status.textContent = "saved" + (reply.path ? " to " + reply.path : "") + "; the node is exiting";
                  document.getElementById("save-exit").disabled = true;
                } else {
                  status.textContent = "refused: " + reply.error;
                }
              } catch (error) {
                status.textContent = "failed: " + error;
              }
            });
            refresh();
            </script>
            </body></html>
            """
    }

    static func text(_ value: JSON) -> String {
        switch value {
        case .string(let s): return s
        case .number(let d): return String(format2: d)
        default: return value.description
        }
    }

    static func escape(_ text: String) -> String {
        var out = ""
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }
}

extension String {
    /// Two decimals, without Foundation.
    init(format2 value: Double) {
        guard value.isFinite else {
            self = "–"
            return
        }
        let hundredths = Int((value * 100).rounded())
        let sign = hundredths < 0 ? "-" : ""
        let magnitude = abs(hundredths)
        let fraction = magnitude % 100
        self = "\(sign)\(magnitude / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
