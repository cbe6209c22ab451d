//! Rows of the report from the trials, and the tables printed and written.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::spec::{Spec, wire_bytes};
use crate::trial::{TrialOut, Window};

pub fn median(v: &[f64]) -> Option<f64> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

pub fn round(v: f64, digits: i32) -> f64 {
    let k = 10f64.powi(digits);
    (v * k).round() / k
}

/// One report row from every trial of a spec.
pub fn row(spec: &Spec, trials: &[TrialOut], env_cpus: (usize, usize)) -> Value {
    let all: Vec<Window> = trials.iter().flat_map(|t| t.windows.clone()).collect();
    let pick = |f: fn(&Window) -> f64| all.iter().map(f).collect::<Vec<f64>>();
    let pps = pick(|w| w.pps);
    let losses: Vec<f64> = trials
        .iter()
        .map(|t| {
            if t.sent == 0 {
                f64::NAN
            } else {
                (1.0 - t.delivered as f64 / t.sent as f64).max(0.0)
            }
        })
        .collect();
    let mut drops: BTreeMap<String, u64> = BTreeMap::new();
    for t in trials {
        for (k, v) in &t.drops {
            *drops.entry(k.clone()).or_default() += v;
        }
    }
    let mut per_queue = vec![0u64; trials.first().map_or(0, |t| t.per_queue.len())];
    for t in trials {
        for (q, v) in t.per_queue.iter().enumerate() {
            if let Some(slot) = per_queue.get_mut(q) {
                *slot += v;
            }
        }
    }
    let total: u64 = per_queue.iter().sum();
    let share: Vec<f64> = per_queue
        .iter()
        .map(|v| round(*v as f64 / total.max(1) as f64, 3))
        .collect();
    let m = |v: Vec<f64>, d: i32| median(&v).map(|x| round(x, d));
    let min = pps.iter().copied().fold(f64::INFINITY, f64::min);
    let max = pps.iter().copied().fold(0.0, f64::max);
    json!({
        "model": spec.join.name(),
        "direction": spec.direction.name(),
        "frame_bytes": spec.frame_bytes,
        "wire_bytes": wire_bytes(spec.frame_bytes),
        "queues": spec.queues,
        "consumer": spec.consumer.name(),
        "txqueuelen": spec.txqueuelen,
        "pps": m(pps, 0),
        "pps_min": if min.is_finite() { Some(round(min, 0)) } else { None },
        "pps_max": round(max, 0),
        "windows": all.len(),
        "offered_pps": m(pick(|w| w.offered_pps), 0),
        "loss": m(losses.clone(), 6),
        "loss_max": losses.iter().copied().filter(|x| x.is_finite()).fold(None, |a: Option<f64>, x| Some(a.map_or(x, |a| a.max(x)))).map(|x| round(x, 6)),
        "sent": trials.iter().map(|t| t.sent).sum::<u64>(),
        "delivered": trials.iter().map(|t| t.delivered).sum::<u64>(),
        "drops": drops,
        "cpu_ns_per_pkt": m(pick(|w| w.cpu_ns_per_pkt), 0),
        "system_busy_ns_per_pkt": m(pick(|w| w.system_ns_per_pkt), 0),
        "sender_cpu_pct": m(pick(|w| w.sender_cpu_pct), 1),
        "receiver_cpu_pct": m(pick(|w| w.receiver_cpu_pct), 1),
        "others_cpu_pct": m(pick(|w| w.others_cpu_pct), 1),
        "sender_cpu": env_cpus.0,
        "receiver_cpu": env_cpus.1,
        "queue_share": share,
        "trials": trials.len(),
        // Per trial, to tell a loss from a busy machine: its loss and the median share of
        // the CPUs other processes took during its windows.
        "trial_loss": losses.iter().map(|l| round(*l, 6)).collect::<Vec<f64>>(),
        "trial_others_cpu_pct": trials
            .iter()
            .map(|t| {
                let others: Vec<f64> = t.windows.iter().map(|w| w.others_cpu_pct).collect();
                median(&others).map(|x| round(x, 1))
            })
            .collect::<Vec<Option<f64>>>(),
        "idle_wait_s": round(trials.iter().map(|t| t.waited_s).sum::<f64>(), 1),
    })
}

/// `ratio_to_reference`: the row's pps over the reference row of the same direction, frame
/// size and consumer (the guest's readers compare with the drop at the pod's veth).
pub fn add_ratios(rows: &mut [Value], reference: &[Value]) {
    for r in rows.iter_mut() {
        let consumer = match r["consumer"].as_str() {
            Some("guest") => "drop",
            Some(c) => c,
            None => continue,
        }
        .to_string();
        let base = reference.iter().find(|x| {
            x["model"] == "reference"
                && x["direction"] == r["direction"]
                && x["frame_bytes"] == r["frame_bytes"]
                && x["consumer"] == consumer.as_str()
        });
        let ratio = match (r["pps"].as_f64(), base.and_then(|b| b["pps"].as_f64())) {
            (Some(p), Some(b)) if b > 0.0 => Some(round(p / b, 3)),
            _ => None,
        };
        r["ratio_to_reference"] = json!(ratio);
    }
}

pub fn kpps(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.0}k", x / 1000.0))
}

pub fn pct(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |x| format!("{:.3}%", x * 100.0))
}

pub fn num(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("-".into(), |x| format!("{x:.digits$}"))
}

pub fn drops_text(r: &Value) -> String {
    let d: Vec<String> = r["drops"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if d.is_empty() {
        "-".into()
    } else {
        d.join(", ")
    }
}

pub fn row_cells(r: &Value) -> Vec<String> {
    vec![
        r["model"].as_str().unwrap_or_default().to_string(),
        r["direction"].as_str().unwrap_or_default().to_string(),
        r["frame_bytes"].to_string(),
        r["queues"].to_string(),
        r["consumer"].as_str().unwrap_or_default().to_string(),
        r["txqueuelen"]
            .as_u64()
            .map_or("-".into(), |q| q.to_string()),
        format!(
            "{} ({}-{})",
            kpps(&r["pps"]),
            kpps(&r["pps_min"]),
            kpps(&r["pps_max"])
        ),
        pct(&r["loss"]),
        num(&r["cpu_ns_per_pkt"], 0),
        num(&r["ratio_to_reference"], 2),
        format!(
            "{}/{}",
            num(&r["sender_cpu_pct"], 0),
            num(&r["receiver_cpu_pct"], 0)
        ),
        num(&r["others_cpu_pct"], 0),
    ]
}

pub const HEADERS: [&str; 12] = [
    "model",
    "direction",
    "frame",
    "q",
    "consumer",
    "txqlen",
    "pps median (min-max)",
    "loss",
    "cpu ns/pkt",
    "x ref",
    "cpu% snd/rcv",
    "others%",
];

pub fn print_tables(report: &Value) {
    if let Some(ratios) = report["ratios"].as_array() {
        println!();
        println!("setup ratios of this run (medians):");
        for r in ratios {
            let met = match r["met"].as_bool() {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "n/a",
            };
            println!(
                "  {:<64} {:>8} {:>8}  {met}",
                r["name"].as_str().unwrap_or_default(),
                num(&r["value"], 3),
                r["target"].as_f64().map_or("-".into(), |t| t.to_string())
            );
        }
    }
    let m = &report["datapath_method"];
    println!();
    println!(
        "datapath: {} rep(s) x {} windows of {} s; sender CPU {}, receiver CPU {}; generator send buffer {}; load {} -> {}",
        m["reps"],
        m["windows_per_trial"],
        m["window_s"],
        m["sender_cpu"],
        m["receiver_cpu"],
        m["generator_sndbuf"],
        m["loadavg_start"].as_str().unwrap_or_default(),
        m["loadavg_end"].as_str().unwrap_or_default()
    );
    let widths = [10, 10, 5, 2, 10, 6, 24, 8, 10, 6, 12, 7];
    let line = |cells: &[String]| {
        let s: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join(" ").trim_end());
    };
    for (title, key) in [
        ("datapath", "datapath"),
        (
            "loss against the tap queue length (txqueuelen)",
            "datapath_queue_len",
        ),
    ] {
        println!();
        println!("{title}:");
        line(&HEADERS.map(String::from));
        for r in report[key].as_array().into_iter().flatten() {
            line(&row_cells(r));
            let d = drops_text(r);
            let share = r["queue_share"].as_array().filter(|s| s.len() > 1);
            if d != "-" || share.is_some() {
                println!(
                    "    drops: {d}{}",
                    share.map_or(String::new(), |s| format!(
                        "; queue share {}",
                        Value::Array(s.clone())
                    ))
                );
            }
        }
    }
}

/// The datapath tables as Markdown (for docs/BENCHMARKS.md).
pub fn markdown(report: &Value) -> String {
    let mut m = String::new();
    for (title, key) in [
        ("datapath", "datapath"),
        ("tap queue length", "datapath_queue_len"),
    ] {
        m += &format!("\n| {title}: {} | drops |\n", HEADERS.join(" | "));
        m += &format!("|{}\n", "---|".repeat(HEADERS.len() + 1));
        for r in report[key].as_array().into_iter().flatten() {
            m += &format!("| {} | {} |\n", row_cells(r).join(" | "), drops_text(r));
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Consumer, Direction, JOINS, Join, Plan};

    #[test]
    fn every_model_row_kind_is_planned_and_compared_with_the_reference() {
        let plan = Plan::smoke();
        let specs = plan.main_specs();
        for &join in JOINS {
            for d in [Direction::ToGuest, Direction::FromGuest] {
                assert!(specs.iter().any(|s| s.join == join && s.direction == d));
            }
            assert!(
                specs
                    .iter()
                    .any(|s| s.join == join && s.consumer == Consumer::UdpSocket)
            );
        }
        assert!(specs.iter().any(|s| s.queues == 2));
        assert!(!plan.queue_len_specs().is_empty());
        assert_eq!(
            Join::parse_list("l3").unwrap(),
            vec![Join::Reference, Join::Model(sandbox_net::Model::L3)]
        );
        assert_eq!(
            Join::parse_list("macvtap,reference,tcfilter").unwrap(),
            JOINS[..3]
        );
        assert!(Join::parse_list("bridge").is_err());
        let mk = |model: &str, consumer: &str, pps: f64| json!({"model": model, "direction": "to_guest", "frame_bytes": 64, "consumer": consumer, "pps": pps});
        let reference = vec![mk("reference", "drop", 800_000.0)];
        let mut rows = vec![
            mk("tcfilter", "guest", 400_000.0),
            mk("tcfilter", "udp_socket", 1.0),
        ];
        add_ratios(&mut rows, &reference);
        assert_eq!(rows[0]["ratio_to_reference"], 0.5);
        assert!(
            rows[1]["ratio_to_reference"].is_null(),
            "no reference row to compare with"
        );
        assert_eq!(median(&[3.0, 1.0, 2.0, f64::NAN]), Some(2.0));
        assert_eq!(median(&[]), None);
    }
}
