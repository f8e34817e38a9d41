//! Property tests of everything that reads outside input: goals, periods,
//! plans, Struct ⇄ JSON, configuration, and agent addresses. For any input:
//! no panic, no hang, and every refusal says what was wrong.
//!
//! CI runs each property over proptest's default number of cases (256).
//! A longer local run: `PROPTEST_CASES=20000 cargo test -p agentmesh-e2e --test properties`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use agentmesh_orchestrator::OrchestratorConfig;
use agentmesh_orchestrator::goal::intent::{Catalog, parse};
use agentmesh_orchestrator::routing::discovery::split_host_port;
use agentmesh_orchestrator::routing::{CardInfo, Registry};
use agentmesh_orchestrator::run::plan::validate;
use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::json::{from_opt_struct, to_struct};
use agentmesh_proto::v1::{
    AgentCard, EndpointHealth, PlanSpec, PlanStep, RunParameters, Skill, StepInputRef,
};
use proptest::prelude::*;
use serde_json::{Map, Value};
use time::macros::date;

fn catalog() -> Catalog {
    let mut values = BTreeMap::new();
    values.insert(
        "region".into(),
        vec!["Europe".into(), "Asia Pacific".into()],
    );
    values.insert(
        "country".into(),
        vec!["Germany".into(), "United States".into()],
    );
    values.insert("product_line".into(), vec!["Laptops".into()]);
    values.insert("channel".into(), vec!["Online".into(), "Retail".into()]);
    Catalog {
        values,
        first_date: date!(2023 - 01 - 01),
        complete_through: date!(2025 - 06 - 30),
        last_date: date!(2025 - 06 - 30),
    }
}

/// Words a sales manager might type, and some that no goal has.
fn goal_word() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "report",
            "summary",
            "charts",
            "metrics",
            "data",
            "Q1",
            "Q2",
            "q5",
            "H1",
            "2024",
            "2025",
            "1899",
            "2025-04",
            "2025-13",
            "2025-04-01",
            "to",
            "vs",
            "last",
            "year",
            "quarter",
            "Europe",
            "EMEA",
            "us",
            "for",
            "the",
            "by",
            "region",
            "april",
            "june",
            "first",
            "second",
            "half",
            "compared",
            "previous",
            "-",
            "..",
            "'",
            "&",
            "Narnia",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z0-9\\-'.&]{1,12}",
        any::<String>(),
    ]
}

/// Cases from `PROPTEST_CASES` (default 256); failures are printed, not
/// written next to the sources.
fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Equal as JSON values, numbers compared as the doubles a Struct holds
/// (`0` and `0.0` are the same number).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_goal_is_read_or_refused_with_a_reason(words in prop::collection::vec(goal_word(), 0..14)) {
        let goal = words.join(" ");
        match parse(&goal, None, &catalog()) {
            Ok(intent) => {
                prop_assert!(intent.period.start <= intent.period.end);
                prop_assert!(!intent.deliverables.is_empty());
            }
            Err(e) => {
                prop_assert!(matches!(e.reason, ErrorReason::GoalNotUnderstood | ErrorReason::InvalidInput), "{e:?}");
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn any_parameters_period_is_read_or_refused(period in "[0-9QHqh\\-. ]{0,24}|.{0,24}") {
        let params = RunParameters { period, ..RunParameters::default() };
        if let Err(e) = parse("report", Some(&params), &catalog()) {
            prop_assert_eq!(e.reason, ErrorReason::InvalidInput);
            prop_assert_eq!(e.metadata.get("field").map(String::as_str), Some("spec.parameters.period"));
        }
    }

    #[test]
    fn any_period_text_parses_to_a_forward_range_or_an_error(text in "[0-9QHqh\\-. ]{0,24}|.{0,24}") {
        match agentmesh_sales::period::parse(&text, date!(2025 - 06 - 30)) {
            Ok(p) => {
                prop_assert!(p.start <= p.end);
                // The canonical form reads back to the same days.
                let back = agentmesh_sales::period::parse(&p.spec(), date!(2025 - 06 - 30)).unwrap();
                prop_assert_eq!((back.start, back.end), (p.start, p.end));
            }
            Err(e) => prop_assert!(!e.0.is_empty()),
        }
    }

    #[test]
    fn json_objects_survive_struct_and_back(value in json_object()) {
        let back = Value::Object(from_opt_struct(Some(&to_struct(&value))));
        let value = Value::Object(value);
        prop_assert!(same(&back, &value), "{} became {}", value, back);
    }

    #[test]
    fn any_agent_address_is_split_or_refused(entry in ".{0,40}") {
        match split_host_port(&entry) {
            Ok((host, port)) => {
                prop_assert!(!host.is_empty() && port > 0);
                prop_assert!(entry.ends_with(&port.to_string()));
            }
            Err(why) => prop_assert!(!why.is_empty()),
        }
    }

    #[test]
    fn any_environment_value_loads_or_names_the_problem(
        key in prop::sample::select(vec![
            "EXECUTION__HEARTBEAT_MS", "EXECUTION__MAX_ATTEMPTS", "ROUTING__MAX_QUEUED_STEPS",
            "DISCOVERY__ENDPOINTS", "SERVER__LISTEN", "STORE__PATH", "EXECUTION__HEARTBEAT_LEASE_FACTOR",
            "TELEMETRY__LOG_FORMAT", "NOPE__NOTHING",
        ]),
        value in ".{0,20}",
    ) {
        let env = vec![(format!("AGENTMESH_{key}"), value)];
        let loaded = agentmesh_runtime::config::load(
            &OrchestratorConfig::default(),
            None,
            env,
            toml::Table::new(),
        );
        if let Err(e) = loaded {
            prop_assert!(!e.to_string().is_empty());
        }
    }
}

fn json_object() -> impl Strategy<Value = Map<String, Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        // Struct numbers are doubles: integers up to 2^53 stay exact.
        (-(1i64 << 53)..(1i64 << 53)).prop_map(|n| Value::from(n as f64)),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map(".{0,8}", value, 0..6).prop_map(|m| m.into_iter().collect())
}

/// A plan of up to 8 steps with random ids, skills and references.
fn plan() -> impl Strategy<Value = PlanSpec> {
    let id = prop_oneof![
        prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_string),
        ".{0,10}",
    ];
    let step = (
        id.clone(),
        prop::sample::select(vec!["work", "other", ""]),
        prop::collection::vec((id.clone(), ".{0,6}", "(/[a-z]{0,3}){0,2}|.{0,4}"), 0..3),
        prop::collection::vec(id, 0..3),
        0u32..12,
    )
        .prop_map(|(id, skill, refs, deps, max_attempts)| PlanStep {
            id,
            skill: skill.to_string(),
            refs: refs
                .into_iter()
                .map(|(from_step, field, pointer)| StepInputRef {
                    field,
                    from_step,
                    pointer,
                })
                .collect(),
            depends_on: deps,
            max_attempts,
            ..PlanStep::default()
        });
    prop::collection::vec(step, 0..8).prop_map(|steps| PlanSpec { steps })
}

#[test]
fn any_plan_is_validated_or_refused_with_a_reason() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _inside = runtime.enter();
    let cfg = OrchestratorConfig::default();
    let registry: Arc<Registry> = Registry::detached(cfg.routing.clone(), cfg.discovery.clone());
    registry.add_source("127.0.0.1:1", "test").unwrap();
    let ep = registry.endpoint("127.0.0.1:1").unwrap();
    let card = AgentCard {
        name: "w".into(),
        version: "1.0.0".into(),
        skills: vec![Skill {
            id: "work".into(),
            ..Skill::default()
        }],
        ..AgentCard::default()
    };
    registry.set_health(
        &ep,
        EndpointHealth::Serving,
        Some(Arc::new(CardInfo::new(card).unwrap())),
    );
    proptest!(config(), |(spec in plan())| {
        match validate(spec, &registry, &cfg.execution) {
            Ok(plan) => {
                // Accepted plans are DAGs: every edge runs forward in a
                // topological order.
                let n = plan.steps.len();
                let mut done = vec![false; n];
                for _ in 0..n {
                    for i in 0..n {
                        if !done[i] && plan.steps[i].deps.iter().all(|&d| done[d]) {
                            done[i] = true;
                        }
                    }
                }
                prop_assert!(done.iter().all(|d| *d));
            }
            Err(e) => {
                prop_assert!(matches!(
                    e.reason,
                    ErrorReason::PlanInvalid | ErrorReason::UnknownSkill | ErrorReason::InvalidInput
                ), "{e:?}");
                prop_assert_eq!(e.code(), tonic::Code::InvalidArgument);
                prop_assert!(!e.message.is_empty());
            }
        }
    });
}
