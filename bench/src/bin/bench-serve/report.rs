//! The reports: per-level rows, the ratio table against the peer and the gateway-overhead table,
//! printed as Markdown on stdout.

use super::*;

/// One level's figures.
pub(crate) struct Row {
    pub(crate) concurrency: usize,
    pub(crate) requests: usize,
    pub(crate) ok: usize,
    pub(crate) wall: f64,
    pub(crate) tokens: u64,
    pub(crate) tps: f64,
    pub(crate) ttft_p50: f64,
    pub(crate) ttft_p90: f64,
    pub(crate) decode_p50: f64,
    pub(crate) latency_p50: f64,
    pub(crate) latency_max: f64,
    pub(crate) prompt_tokens: u64,
    pub(crate) cached_tokens: u64,
    pub(crate) finishes: String,
}

impl Row {
    pub(crate) fn new(concurrency: usize, level: &Level) -> Row {
        let ok: Vec<&Outcome> = level.outcomes.iter().filter(|o| o.ok()).collect();
        let col = |f: fn(&Outcome) -> f64| ok.iter().map(|o| f(o)).collect::<Vec<f64>>();
        let ttft = col(|o| o.ttft);
        let latency = col(|o| o.latency);
        let decode: Vec<f64> = ok.iter().filter_map(|o| o.decode_tps()).collect();
        let tokens: u64 = ok.iter().map(|o| o.tokens).sum();
        let mut finishes = std::collections::BTreeMap::<&str, usize>::new();
        for o in &ok {
            *finishes.entry(o.finish.as_str()).or_default() += 1;
        }
        Row {
            concurrency,
            requests: level.outcomes.len(),
            ok: ok.len(),
            wall: level.wall,
            tokens,
            tps: tokens as f64 / level.wall,
            ttft_p50: median(&ttft),
            ttft_p90: percentile(&ttft, 90.0),
            decode_p50: median(&decode),
            latency_p50: median(&latency),
            latency_max: latency.iter().copied().fold(f64::NAN, f64::max),
            prompt_tokens: ok.iter().map(|o| o.prompt_tokens).sum(),
            cached_tokens: ok.iter().map(|o| o.cached_tokens).sum(),
            finishes: finishes.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", "),
        }
    }
}

pub(crate) fn print_rows(rows: &[Row]) {
    println!(
        "| concurrency | requests | ok | wall s | output tokens | **aggregate output tok/s** | TTFT p50 s | TTFT p90 s \
         | decode tok/s per request (p50) | latency p50 s | latency max s | finish | prompt tokens (cached) |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.1} | {} | **{:.2}** | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} ({}) |",
            r.concurrency,
            r.requests,
            r.ok,
            r.wall,
            r.tokens,
            r.tps,
            r.ttft_p50,
            r.ttft_p90,
            r.decode_p50,
            r.latency_p50,
            r.latency_max,
            r.finishes,
            r.prompt_tokens,
            r.cached_tokens
        );
    }
}

pub(crate) fn ratio(a: f64, b: f64) -> String {
    ratio_prec(a, b, 2)
}

pub(crate) fn ratio_prec(a: f64, b: f64, digits: usize) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 { format!("{:.digits$}x", a / b) } else { "–".into() }
}

pub(crate) fn print_ratios(ours: &[Row], peer: &[Row]) {
    println!(
        "| concurrency | zeta tok/s | mlx_lm tok/s | **aggregate ratio** | zeta TTFT p50 s | mlx_lm TTFT p50 s | TTFT ratio \
         | zeta decode/stream tok/s | mlx_lm decode/stream tok/s | **decode ratio** |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let dash = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2}"));
    for o in ours {
        let p = peer.iter().find(|p| p.concurrency == o.concurrency);
        let (ptps, pttft, pdec) = (p.map(|p| p.tps), p.map(|p| p.ttft_p50), p.map(|p| p.decode_p50));
        println!(
            "| {} | {:.2} | {} | **{}** | {:.2} | {} | {} | {:.2} | {} | **{}** |",
            o.concurrency,
            o.tps,
            dash(ptps),
            ratio(o.tps, ptps.unwrap_or(f64::NAN)),
            o.ttft_p50,
            dash(pttft),
            ratio(o.ttft_p50, pttft.unwrap_or(f64::NAN)),
            o.decode_p50,
            dash(pdec),
            ratio(o.decode_p50, pdec.unwrap_or(f64::NAN)),
        );
    }
}

/// The overhead comparison at one concurrency.
pub(crate) struct OverheadLevel {
    pub(crate) concurrency: usize,
    pub(crate) http: Vec<Outcome>,
    pub(crate) grpc: Vec<Outcome>,
}

/// Summary of one path: (ok, tokens, latency mean, latency p50, TTFT mean, TTFT p50, ms per
/// output token p50).
pub(crate) fn path_stats(outcomes: &[Outcome]) -> (usize, u64, f64, f64, f64, f64, f64) {
    let ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.ok()).collect();
    let mean = |xs: &[f64]| if xs.is_empty() { f64::NAN } else { xs.iter().sum::<f64>() / xs.len() as f64 };
    let latency: Vec<f64> = ok.iter().map(|o| o.latency).collect();
    let ttft: Vec<f64> = ok.iter().map(|o| o.ttft).collect();
    let per_token: Vec<f64> = ok.iter().filter(|o| o.tokens > 0).map(|o| 1e3 * o.latency / o.tokens as f64).collect();
    (
        ok.len(),
        ok.iter().map(|o| o.tokens).sum(),
        mean(&latency),
        median(&latency),
        mean(&ttft),
        median(&ttft),
        median(&per_token),
    )
}

pub(crate) fn print_overhead(levels: &[OverheadLevel]) {
    println!(
        "| concurrency | path | requests | ok | output tokens | latency mean s | latency p50 s | TTFT mean s | TTFT p50 s \
         | ms per output token (p50) |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for l in levels {
        for (path, outs) in [("gateway HTTP/SSE", &l.http), ("gRPC direct", &l.grpc)] {
            let (ok, tokens, lm, lp, tm, tp, pt) = path_stats(outs);
            println!(
                "| {} | {path} | {} | {ok} | {tokens} | {lm:.3} | {lp:.3} | {tm:.3} | {tp:.3} | {pt:.2} |",
                l.concurrency,
                outs.len()
            );
        }
    }
    println!(
        "\n| concurrency | latency mean: gateway − gRPC ms | ratio | latency p50: diff ms | ratio \
         | TTFT mean: diff ms | ratio | TTFT p50: diff ms | ratio |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for l in levels {
        let (_, _, hlm, hlp, htm, htp, _) = path_stats(&l.http);
        let (_, _, glm, glp, gtm, gtp, _) = path_stats(&l.grpc);
        println!(
            "| {} | {:+.1} | {} | {:+.1} | {} | {:+.1} | {} | {:+.1} | {} |",
            l.concurrency,
            1e3 * (hlm - glm),
            ratio_prec(hlm, glm, 3),
            1e3 * (hlp - glp),
            ratio_prec(hlp, glp, 3),
            1e3 * (htm - gtm),
            ratio_prec(htm, gtm, 3),
            1e3 * (htp - gtp),
            ratio_prec(htp, gtp, 3),
        );
    }
}
