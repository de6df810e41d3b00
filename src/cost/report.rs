//! Spend grouped by day, model or user, and drawn as bars for the terminal.

use std::collections::BTreeMap;

use super::ledger::{Charge, Micros, Tokens, to_usd};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    Day,
    Model,
    User,
}

/// Spend per group, largest first for models and users, in date order for days.
pub fn group(charges: &[Charge], by: GroupBy) -> Vec<(String, Micros)> {
    group_totals(charges, by)
        .into_iter()
        .map(|(key, t)| (key, t.spent))
        .collect()
}

/// What a group of charges adds up to: the money, the calls it paid for and their tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub spent: Micros,
    /// Charged calls; a day imported from the seed's tracker is spend without a request.
    pub requests: u64,
    pub tokens: Tokens,
}

impl Totals {
    fn add(&mut self, c: &Charge) {
        self.spent = super::ledger::add(self.spent, c.spent);
        self.requests += u64::from(c.request);
        self.tokens.input = self.tokens.input.saturating_add(c.tokens.input);
        self.tokens.output = self.tokens.output.saturating_add(c.tokens.output);
    }
}

/// [`group`] with requests and tokens beside the spend, in the same order.
pub fn group_totals(charges: &[Charge], by: GroupBy) -> Vec<(String, Totals)> {
    let rows = group_with(charges, |c| {
        Some(match by {
            GroupBy::Day => c.day.clone(),
            GroupBy::Model => c.model.clone(),
            GroupBy::User => c.user_id.clone().unwrap_or_else(|| "(none)".into()),
        })
    });
    if by == GroupBy::Day {
        rows
    } else {
        largest_first(rows)
    }
}

/// Totals per key `key` gives (charges it gives none are left out), in key order.
pub fn group_with(
    charges: &[Charge],
    key: impl Fn(&Charge) -> Option<String>,
) -> Vec<(String, Totals)> {
    let mut totals: BTreeMap<String, Totals> = BTreeMap::new();
    for c in charges {
        if let Some(k) = key(c) {
            totals.entry(k).or_default().add(c);
        }
    }
    totals.into_iter().collect()
}

/// Largest spend first, then by name.
pub fn largest_first(mut rows: Vec<(String, Totals)>) -> Vec<(String, Totals)> {
    rows.sort_by(|a, b| b.1.spent.cmp(&a.1.spent).then(a.0.cmp(&b.0)));
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
            key_id: None,
            spent,
            tokens: Tokens {
                input: 10,
                output: 5,
            },
            request: true,
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
        let totals = group_totals(&charges, GroupBy::Model);
        assert_eq!((totals[0].1.requests, totals[0].1.tokens.input), (2, 20));
        let text = render(&group(&charges, GroupBy::User), 10);
        assert!(
            text.contains(&"█".repeat(10)) && text.contains("total"),
            "{text}"
        );
    }
}
