//! What a step's output must satisfy before later steps see it: the
//! skill's output schema, then the plan step's expectations (non-empty
//! arrays, SVG artifacts, text faithful to the step's input). A violation
//! is a failed attempt (OUTPUT_INVALID, retryable elsewhere).

use agentmesh_proto::error::ErrorReason;
use agentmesh_proto::v1::{Artifact, part};
use serde_json::Value;

use crate::run::attempt::AttemptOutput;
use crate::run::failure::Failure;
use crate::run::hooks::RunHooks;
use crate::run::plan::StepPlan;

/// Checks `out` (the output of `step` for `input`).
pub fn validate(
    step: &StepPlan,
    input: &Value,
    out: AttemptOutput,
    hooks: &dyn RunHooks,
) -> Result<AttemptOutput, Failure> {
    let invalid = |message: String| Failure::new(ErrorReason::OutputInvalid, message);
    let value = Value::Object(out.output);
    if let Some(skill) = &step.skill {
        skill
            .schemas
            .check_output_value(&value)
            .map_err(|e| invalid(e.message))?;
    }
    if let Some(expect) = &step.spec.expect {
        for pointer in &expect.non_empty {
            let ok = value
                .pointer(pointer)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !ok {
                return Err(invalid(format!(
                    "expected a non-empty array at {pointer} of the output"
                )));
            }
        }
        let svgs = out.artifacts.iter().filter(|a| is_svg(a)).count();
        if svgs < expect.min_svg_artifacts as usize {
            return Err(invalid(format!(
                "expected at least {} valid SVG artifacts, got {svgs}",
                expect.min_svg_artifacts
            )));
        }
        if !expect.faithful_text.is_empty() {
            let text = value
                .pointer(&expect.faithful_text)
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid(format!(
                        "expected text at {} of the output",
                        expect.faithful_text
                    ))
                })?;
            hooks.check_faithful(text, input).map_err(|why| {
                invalid(format!(
                    "the text at {} is not faithful to the step's input: {why}",
                    expect.faithful_text
                ))
            })?;
        }
    }
    let Value::Object(output) = value else {
        return Err(invalid("output is not an object".into()));
    };
    Ok(AttemptOutput {
        output,
        output_pb: out.output_pb,
        artifacts: out.artifacts,
    })
}

/// An `image/svg+xml` artifact whose bytes parse as XML with an `<svg>` root.
pub fn is_svg(artifact: &Artifact) -> bool {
    artifact.parts.iter().any(|p| {
        let Some(part::Content::Raw(bytes)) = &p.content else {
            return false;
        };
        p.media_type == "image/svg+xml"
            && std::str::from_utf8(bytes).is_ok_and(|text| {
                roxmltree::Document::parse(text)
                    .is_ok_and(|doc| doc.root_element().tag_name().name() == "svg")
            })
    })
}
