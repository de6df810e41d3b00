//! Spend grouped by day, model or user, and drawn as bars for the terminal.

use std::collections::BTreeMap;

use super::ledger::{Charge, Micros, to_usd};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Day,
    Model,
    User,
}

/// Totals per group, largest first for models and users, in date order for days.
pub fn group(charges: &[Charge], by: GroupBy) -> Vec<(String, Micros)> {
    let mut totals: BTreeMap<String, Micros> = BTreeMap::new();
    for c in charges {
        let key = match by {
            GroupBy::Day => c.day.clone(),
            GroupBy::Model => c.model.clone(),
            GroupBy::User => c.user_id.clone().unwrap_or_else(|| "(none)".into()),
        };
        let total = totals.entry(key).or_default();
        *total = super::ledger::add(*total, c.spent);
    }
    let mut rows: Vec<_> = totals.into_iter().collect();
    if by != GroupBy::Day {
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    rows
}

/// One line per group: name, amount, and a bar scaled to the largest amount.
pub fn render(rows: &[(String, Micros)], width: usize) -> String {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let name_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let mut out = String::new();
    for (name, amount) in rows {
        let bar = ((*amount as f64 / max as f64) * width as f64).round() as usize;
        out.push_str(&format!(
            "{name:<name_w$}  ${:>10.4}  {}\n",
            to_usd(*amount),
            "█".repeat(bar)
        ));
    }
    let total: Micros = rows.iter().map(|r| r.1).sum();
    out.push_str(&format!("{:<name_w$}  ${:>10.4}\n", "total", to_usd(total)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(day: &str, model: &str, user: &str, spent: Micros) -> Charge {
        Charge {
            day: day.into(),
            model: model.into(),
            user_id: Some(user.into()),
            spent,
        }
    }

    #[test]
    fn groups_and_bars() {
        let charges = [
            c("2026-11-01", "gpt-4o", "a", 3_000_000),
            c("2026-11-02", "gpt-4o-mini", "b", 1_000_000),
            c("2026-11-02", "gpt-4o", "a", 1_000_000),
        ];
        assert_eq!(
            group(&charges, GroupBy::Model),
            vec![
                ("gpt-4o".into(), 4_000_000),
                ("gpt-4o-mini".into(), 1_000_000)
            ]
        );
        assert_eq!(group(&charges, GroupBy::Day)[0].0, "2026-11-01");
        let text = render(&group(&charges, GroupBy::User), 10);
        assert!(
            text.contains(&"█".repeat(10)) && text.contains("total"),
            "{text}"
        );
    }
}
