use super::*;
use crate::providers::{ChatMessage, ChatRequest};

/// The events (type and data) a stream of `relayed` makes, past the two opening ones.
fn events(relayed: Vec<Relayed>) -> Vec<(String, Value)> {
    let (_tx, rx) = mpsc::channel(1);
    let req = ChatRequest::new("m", vec![ChatMessage::text("user", "hi")]);
    let mut e = Events::new(rx, Head::new(&req, None, "m".into()));
    for r in relayed {
        e.take(r);
    }
    let all: Vec<(String, Value)> = e.queue.into_iter().collect();
    for (n, (kind, data)) in all.iter().enumerate() {
        assert_eq!(data["type"], kind.as_str());
        assert_eq!(data["sequence_number"], n as u64);
    }
    all.into_iter().skip(2).collect()
}

fn call(index: u32, named: Option<(&str, &str)>, arguments: &str) -> Relayed {
    Relayed::Delta(Delta::ToolCall {
        choice: 0,
        index,
        id: named.map(|(id, _)| id.to_string()),
        name: named.map(|(_, name)| name.to_string()),
        arguments: arguments.into(),
    })
}

fn finish(reason: &str) -> Relayed {
    Relayed::Delta(Delta::Finish {
        choice: 0,
        reason: reason.into(),
    })
}

#[test]
fn a_late_fragment_of_a_call_lands_before_its_done() {
    let out = events(vec![
        call(0, Some(("c1", "f")), "{\"a\""),
        call(1, Some(("c2", "g")), "{}"),
        // Call 0's last fragment, after call 1 opened.
        call(0, None, ":1}"),
        finish("tool_calls"),
        Relayed::Done,
    ]);
    // No event of an item after its `output_item.done`.
    for (n, (kind, data)) in out.iter().enumerate() {
        if kind == "response.output_item.done" {
            let at = &data["output_index"];
            assert!(
                !out[n + 1..].iter().any(|(_, d)| &d["output_index"] == at),
                "{out:?}"
            );
        }
    }
    let done: Vec<(&Value, &Value)> = out
        .iter()
        .filter(|(k, _)| k == "response.function_call_arguments.done")
        .map(|(_, d)| (&d["output_index"], &d["arguments"]))
        .collect();
    assert_eq!(
        done,
        [(&json!(0), &json!("{\"a\":1}")), (&json!(1), &json!("{}"))]
    );
    let (kind, last) = out.last().unwrap();
    assert_eq!(kind, "response.completed");
    assert_eq!(last["response"]["output"][0]["arguments"], "{\"a\":1}");
    assert_eq!(last["response"]["output"][0]["status"], "completed");
}

#[test]
fn a_refusal_streams_as_a_refusal_part_of_the_message() {
    let refusal = |text: &str| {
        Relayed::Delta(Delta::Refusal {
            choice: 0,
            text: text.into(),
        })
    };
    let out = events(vec![
        Relayed::Delta(Delta::Text {
            choice: 0,
            text: "Well.".into(),
        }),
        refusal("I can't "),
        refusal("do that."),
        finish("content_filter"),
        Relayed::Done,
    ]);
    let kinds: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.content_part.added",
            "response.refusal.delta",
            "response.refusal.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.refusal.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.incomplete",
        ]
    );
    let part = json!({"type": "refusal", "refusal": ""});
    assert_eq!(out[3].1["part"], part);
    assert_eq!(out[3].1["content_index"], 1);
    assert_eq!(out[4].1["delta"], "I can't ");
    assert_eq!(out[4].1["content_index"], 1);
    assert!(out[4].1["item_id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(out[8].1["refusal"], "I can't do that.");
    let whole = json!({"type": "refusal", "refusal": "I can't do that."});
    assert_eq!(out[9].1["part"], whole);
    let message = &out[11].1["response"]["output"][0];
    assert_eq!(message["content"][0]["text"], "Well.");
    assert_eq!(message["content"][1], whole);
    assert_eq!(
        out[11].1["response"]["incomplete_details"]["reason"],
        "content_filter"
    );
}
