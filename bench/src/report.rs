//! The figures a run measures, shown as a Markdown table (and JSON).

use crate::receiver::Receiver;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// One measured figure.
pub struct Row {
    pub scenario: &'static str,
    pub metric: String,
    pub value: f64,
    pub unit: &'static str,
    target: Option<(f64, bool)>,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub failures: Vec<String>,
}

impl Report {
    pub fn add(&mut self, scenario: &'static str, metric: &str, value: f64, unit: &'static str) {
        self.rows.push(Row {
            scenario,
            metric: metric.into(),
            value,
            unit,
            target: None,
        });
    }

    /// A figure with a target: `at_least` true for ≥, false for ≤.
    pub fn target(
        &mut self,
        scenario: &'static str,
        metric: &str,
        value: f64,
        unit: &'static str,
        goal: f64,
        at_least: bool,
    ) {
        self.rows.push(Row {
            scenario,
            metric: metric.into(),
            value,
            unit,
            target: Some((goal, at_least)),
        });
    }

    /// Whether everything arrived, and every signature was valid.
    pub fn check_arrivals(&mut self, scenario: &str, what: &str, complete: bool, rx: &Receiver) {
        self.check(scenario, what, complete);
        self.check(
            scenario,
            "every signature valid",
            rx.counts.bad_signatures.load(Ordering::Relaxed) == 0,
        );
    }

    pub fn check(&mut self, scenario: &str, what: &str, ok: bool) {
        if !ok {
            self.failures.push(format!("{scenario}: {what}"));
        }
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("| scenario | metric | value | target |\n|---|---|---|---|\n");
        for r in &self.rows {
            let target = match r.target {
                Some((goal, at_least)) => {
                    let met = if at_least { r.value >= goal } else { r.value <= goal };
                    format!(
                        "{} {} {}",
                        if at_least { "≥" } else { "≤" },
                        fmt(goal),
                        if met { "met" } else { "**missed**" }
                    )
                }
                None => String::new(),
            };
            out.push_str(&format!(
                "| {} | {} | {} {} | {} |\n",
                r.scenario,
                r.metric,
                fmt(r.value),
                r.unit,
                target
            ));
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "rows": self.rows.iter().map(|r| json!({
                "scenario": r.scenario, "metric": r.metric, "value": r.value, "unit": r.unit,
                "target": r.target.map(|(g, at_least)| json!({"value": g, "at_least": at_least})),
            })).collect::<Vec<_>>(),
            "failures": self.failures,
        })
    }
}

pub fn fmt(v: f64) -> String {
    if v >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}
