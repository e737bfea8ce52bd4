//! The Argo CD health check (`gitops/argocd/health.lua`) run by a real Lua 5.1 interpreter,
//! as Argo CD runs it: a global `obj`, a returned `{status, message}` table, no standard
//! libraries. The cases are Argo CD's own convention (`health_test.yaml` + `testdata/`),
//! plus the conditions the operator's code actually writes for each phase.

use std::path::{Path, PathBuf};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use mlua::{Lua, LuaOptions, LuaSerdeExt, SerializeOptions, StdLib, Table};
use pwreset_operator::conditions::{Phase, conditions_for};
use pwreset_operator::reason::{Kind, Reason};
use serde::Deserialize;
use serde_json::{Value, json};

const CM_KEY: &str = "resource.customizations.health.pwreset.dev_PasswordResetOperation";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("gitops/argocd")
}

fn script() -> String {
    std::fs::read_to_string(dir().join("health.lua")).expect("gitops/argocd/health.lua")
}

/// Runs the health script against `obj` and returns (status, message).
fn health(script: &str, obj: &Value) -> Result<(String, String), mlua::Error> {
    // Argo CD's Lua VM is 5.1-compatible and scripts get no os/io/string libraries: open
    // none, so a script relying on them fails here too.
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::default())?;
    // JSON null becomes nil, as Argo CD's unstructured -> Lua conversion does.
    let options = SerializeOptions::new().serialize_none_to_null(false).serialize_unit_to_null(false);
    lua.globals().set("obj", lua.to_value_with(obj, options)?)?;
    let result: Table = lua.load(script).set_name("health.lua").eval()?;
    Ok((result.get("status")?, result.get::<Option<String>>("message")?.unwrap_or_default()))
}

#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Expected,
    input_path: String,
}

#[derive(Deserialize)]
struct Expected {
    status: String,
    message: Option<String>,
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_interpreter_is_lua_5_1_without_standard_libraries() {
    let lua = Lua::new_with(StdLib::NONE, LuaOptions::default()).unwrap();
    let version: String = lua.load("return _VERSION").eval().unwrap();
    assert_eq!(version, "Lua 5.1");
    let has_string: bool = lua.load("return string ~= nil or os ~= nil or io ~= nil").eval().unwrap();
    assert!(!has_string, "the check must not depend on string/os/io");
}

#[test]
fn every_case_in_health_test_yaml_gives_the_expected_health() {
    let script = script();
    let cases: HealthTests = serde_yaml::from_str(&std::fs::read_to_string(dir().join("health_test.yaml")).unwrap())
        .expect("health_test.yaml");
    assert!(cases.tests.len() >= 6);
    let mut failures = Vec::new();
    for case in &cases.tests {
        let obj = read_yaml(&dir().join(&case.input_path));
        match health(&script, &obj) {
            Ok((status, message)) => {
                if status != case.health_status.status
                    || case.health_status.message.as_ref().is_some_and(|m| *m != message)
                {
                    failures.push(format!(
                        "{}: got {status}/{message:?}, want {}/{:?}",
                        case.input_path, case.health_status.status, case.health_status.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: the script failed: {e}", case.input_path)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Every scenario Argo CD users meet is covered, and no testdata file is left unused.
    let statuses: Vec<&str> = cases.tests.iter().map(|t| t.health_status.status.as_str()).collect();
    for wanted in ["Healthy", "Progressing", "Degraded", "Suspended"] {
        assert!(statuses.contains(&wanted), "no {wanted} case");
    }
    let used: Vec<&str> = cases.tests.iter().map(|t| t.input_path.as_str()).collect();
    for required in [
        "no-status",
        "deleting",
        "generation-behind",
        "healthy",
        "degraded-failed",
        "progressing-running",
        "suspended-paused",
    ] {
        assert!(used.contains(&format!("testdata/{required}.yaml").as_str()), "no case for {required}");
    }
    for entry in std::fs::read_dir(dir().join("testdata")).unwrap() {
        let name = format!("testdata/{}", entry.unwrap().file_name().to_string_lossy());
        assert!(used.contains(&name.as_str()), "{name} is not used by health_test.yaml");
    }
}

#[test]
fn argocd_cm_snippet_carries_the_same_script() {
    let cm = read_yaml(&dir().join("argocd-cm.yaml"));
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let embedded = cm["data"][CM_KEY].as_str().unwrap_or_else(|| panic!("argocd-cm.yaml has no data.{CM_KEY}"));
    assert!(embedded == script(), "argocd-cm.yaml and health.lua differ: copy health.lua into the snippet");
}

/// The conditions the operator writes (from its own code), read by the script.
#[test]
fn conditions_the_operator_writes_map_to_the_right_health() {
    let script = script();
    let now = Time(jiff::Timestamp::from_second(1_800_000_000).unwrap());
    // Every reason the operator can write, with the health its kind must show.
    let cases = Reason::ALL.iter().map(|&reason| {
        let want = match reason.kind() {
            // Held on purpose by a person, as Argo CD shows a paused Deployment.
            Kind::Progressing if reason == Reason::Paused => "Suspended",
            Kind::Progressing => "Progressing",
            Kind::Blocked | Kind::Failed => "Degraded",
            Kind::Succeeded => "Healthy",
        };
        (Phase::new(reason, format!("what happened: {reason}")), want)
    });
    let mut checked = 0;
    for (phase, want) in cases {
        checked += 1;
        let conditions = conditions_for(&phase, Some(3), &now, &[]);
        let obj = json!({
            "apiVersion": "pwreset.dev/v1alpha1",
            "kind": "PasswordResetOperation",
            "metadata": {"name": "x", "namespace": "team-a", "generation": 3},
            "spec": {"userId": "alice@contoso.com", "operationId": "op"},
            "status": {"observedGeneration": 3, "conditions": conditions},
        });
        let (status, message) = health(&script, &obj).unwrap();
        assert_eq!(status, want, "{phase:?}");
        assert_eq!(message, phase.message, "the condition's message is shown");

        // The same status, written for an older generation: not settled yet.
        let mut behind = obj.clone();
        behind["metadata"]["generation"] = json!(4);
        assert_eq!(health(&script, &behind).unwrap().0, "Progressing", "{phase:?} with a newer spec");

        // Being deleted wins over everything.
        let mut deleting = obj.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2027-01-15T08:00:00Z");
        assert_eq!(health(&script, &deleting).unwrap().0, "Progressing");
    }
    assert_eq!(checked, Reason::ALL.len());
    assert!(checked > 20, "every reason is checked, not a sample");
}

#[test]
fn odd_but_possible_objects_do_not_break_the_script() {
    let script = script();
    for obj in [
        json!({}),
        json!({"metadata": {}}),
        json!({"metadata": {"generation": 1}, "status": null}),
        json!({"metadata": {"generation": 1}, "status": {}}),
        json!({"metadata": {"generation": 1}, "status": {"conditions": [{"type": "Ready"}]}}),
        json!({"metadata": {"generation": 1}, "status": {"conditions": [{"type": "Stalled", "status": "True"}]}}),
    ] {
        let (status, _) = health(&script, &obj).unwrap_or_else(|e| panic!("{obj}: {e}"));
        assert!(["Progressing", "Degraded"].contains(&status.as_str()), "{obj}: {status}");
    }
}
