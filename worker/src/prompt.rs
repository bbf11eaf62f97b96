//! Prompt rendering with minijinja in strict mode: a variable the template uses but the request
//! does not define is an error that names it, never an empty string in the prompt.

use caxton_ipc_protocol::{JobAgent, JobInput};
use minijinja::{Environment, UndefinedBehavior};

/// The system and user messages for one request.
#[derive(Debug)]
pub struct RenderedPrompt {
    pub system: String,
    pub user: String,
}

/// Render both of the agent's templates against the request.
pub fn render(agent: &JobAgent, input: &JobInput) -> Result<RenderedPrompt, String> {
    let parameters: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&agent.parameters_json)
            .map_err(|e| format!("agent parameters are not a JSON object: {e}"))?;
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Prompts are plain text for a model; HTML escaping would corrupt them.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    let mut vars: serde_json::Map<String, serde_json::Value> = parameters.clone();
    vars.insert("parameters".into(), serde_json::Value::Object(parameters));
    vars.insert("agent".into(), agent.name.clone().into());
    vars.insert("request".into(), input.request.clone().into());
    // `{{ context }}` is what templates written before memory existed use, so the memories
    // go there too, after the caller's own context.
    let context = match (input.context.is_empty(), input.memory_context.is_empty()) {
        (_, true) => input.context.clone(),
        (true, false) => input.memory_context.clone(),
        (false, false) => format!("{}\n\n{}", input.context, input.memory_context),
    };
    vars.insert("context".into(), context.into());
    vars.insert("memory_context".into(), input.memory_context.clone().into());
    vars.insert("requirements".into(), input.requirements.clone().into());
    vars.insert(
        "conversation_id".into(),
        input.conversation_id.clone().into(),
    );
    let history = input
        .history
        .iter()
        .map(|t| serde_json::json!({"agent": t.agent, "request": t.request, "answer": t.answer}))
        .collect();
    vars.insert("history".into(), serde_json::Value::Array(history));
    let system = render_one(&env, "system_prompt", &agent.system_prompt, &vars)?;
    let user = render_one(
        &env,
        "user_prompt_template",
        &agent.user_prompt_template,
        &vars,
    )?;
    Ok(RenderedPrompt { system, user })
}

fn render_one(
    env: &Environment<'_>,
    field: &str,
    source: &str,
    vars: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, String> {
    let template = env
        .template_from_str(source)
        .map_err(|e| format!("cannot parse {field}: {e}"))?;
    // Strict mode alone reports "undefined value" without the name; look the names up first so
    // the error says which variable the request did not supply.
    // minijinja's global functions (`range`, `dict`, `namespace`, ...) are defined by the
    // environment, not by the request.
    let mut missing: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|name| !vars.contains_key(name) && !env.globals().any(|(g, _)| g == name))
        .collect();
    if !missing.is_empty() {
        missing.sort();
        return Err(format!(
            "undefined variable in {field}: {}",
            missing.join(", ")
        ));
    }
    template
        .render(minijinja::value::Serde(vars))
        .map_err(|e| format!("cannot render {field}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(template: &str) -> JobAgent {
        JobAgent {
            name: "hello".into(),
            version: "1".into(),
            system_prompt: "You help {{ agent }} users.".into(),
            user_prompt_template: template.into(),
            parameters_json: r#"{"tone":"dry"}"#.into(),
            tools: Vec::new(),
            max_tool_calls: 0,
        }
    }

    #[test]
    fn renders_request_fields_and_parameters() {
        let input = JobInput {
            request: "hi <b>".into(),
            context: "ctx".into(),
            ..JobInput::default()
        };
        let out = render(
            &agent("{{ request }} / {{ context }} / {{ tone }} / {{ parameters.tone }}"),
            &input,
        )
        .unwrap();
        assert_eq!(out.user, "hi <b> / ctx / dry / dry");
        assert_eq!(out.system, "You help hello users.");
    }

    #[test]
    fn a_template_can_loop_over_the_conversation_s_earlier_turns() {
        let input = JobInput {
            request: "and now?".into(),
            conversation_id: "c-9".into(),
            history: vec![caxton_ipc_protocol::Turn {
                agent: "hello".into(),
                request: "first".into(),
                answer: "one".into(),
            }],
            ..JobInput::default()
        };
        let out = render(
            &agent("{{ conversation_id }}:{% for t in history %}[{{ t.request }}={{ t.answer }}]{% endfor %} {{ request }}"),
            &input,
        )
        .unwrap();
        assert_eq!(out.user, "c-9:[first=one] and now?");
    }

    #[test]
    fn memories_reach_both_context_variables() {
        let input = JobInput {
            request: "q".into(),
            context: "caller".into(),
            memory_context: "- Ada: likes tea".into(),
            ..JobInput::default()
        };
        let out = render(&agent("[{{ context }}] [{{ memory_context }}]"), &input).unwrap();
        assert_eq!(out.user, "[caller\n\n- Ada: likes tea] [- Ada: likes tea]");
        let alone = JobInput {
            context: String::new(),
            ..input
        };
        let out = render(&agent("[{{ context }}]"), &alone).unwrap();
        assert_eq!(out.user, "[- Ada: likes tea]");
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_it() {
        let err = render(
            &agent("{{ request }} {{ customer_name }}"),
            &JobInput::default(),
        )
        .unwrap_err();
        assert!(err.contains("user_prompt_template"), "{err}");
        assert!(
            err.contains("undefined variable") && err.contains("customer_name"),
            "{err}"
        );
    }
}
