//! `batch` printers: jobs (1.35's STATUS column) and cron jobs.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::format::{
    age, bool_ptr, condition_true, containers, format_label_selector, human_duration_nanos, int,
    is_deleting, list, name, nanos_between, opt_int, opt_text, parse_time, since, text,
};
use super::{AGE, CONTAINERS, ColumnDefinition, IMAGES, NAME, Printer, col, wide};

pub(super) fn lookup(group: &str, resource: &str) -> Option<Printer> {
    match (group, resource) {
        ("batch", "jobs") => Some(Printer {
            columns: JOB,
            cells: job,
        }),
        ("batch", "cronjobs") => Some(Printer {
            columns: CRON_JOB,
            cells: cron_job,
        }),
        _ => None,
    }
}

const SELECTOR_DOC: &str = "A label query over pods that should match the pod count.";

const JOB: &[ColumnDefinition] = &[
    NAME,
    col("Status", "string", "Status of the job."),
    col(
        "Completions",
        "string",
        "The number of pods which reached phase Succeeded.",
    ),
    col("Duration", "string", "Time required to complete the job."),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", SELECTOR_DOC),
];

/// `printJob`'s status: Complete, Failed, Terminating, Suspended, FailureTarget or Running.
fn job_status(job: &Value) -> &'static str {
    let has = |t: &str| condition_true(job, "/status/conditions", t);
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn job(job: &Value, now: Timestamp) -> Vec<Value> {
    let succeeded = int(job, "/status/succeeded");
    let completions = match opt_int(job, "/spec/completions") {
        Some(c) => format!("{succeeded}/{c}"),
        None => match opt_int(job, "/spec/parallelism").unwrap_or(0) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match parse_time(job.pointer("/status/startTime")) {
        None => String::new(),
        Some(start) => {
            let end = parse_time(job.pointer("/status/completionTime")).unwrap_or(now);
            human_duration_nanos(nanos_between(start, end))
        }
    };
    let (names, images) = containers(list(job, "/spec/template/spec/containers"));
    vec![
        json!(name(job)),
        json!(job_status(job)),
        json!(completions),
        json!(duration),
        json!(age(job, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(job.pointer("/spec/selector"))),
    ]
}

const CRON_JOB: &[ColumnDefinition] = &[
    NAME,
    col(
        "Schedule",
        "string",
        "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.",
    ),
    col(
        "Timezone",
        "string",
        "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones.",
    ),
    col(
        "Suspend",
        "boolean",
        "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.",
    ),
    col(
        "Active",
        "integer",
        "A list of pointers to currently running jobs.",
    ),
    col(
        "Last Schedule",
        "string",
        "Information when was the last time the job was successfully scheduled.",
    ),
    AGE,
    CONTAINERS,
    IMAGES,
    wide("Selector", "string", SELECTOR_DOC),
];

fn cron_job(cj: &Value, now: Timestamp) -> Vec<Value> {
    let last_schedule = match cj
        .pointer("/status/lastScheduleTime")
        .filter(|v| !v.is_null())
    {
        Some(t) => since(Some(t), now),
        None => "<none>".to_owned(),
    };
    let (names, images) = containers(list(cj, "/spec/jobTemplate/spec/template/spec/containers"));
    vec![
        json!(name(cj)),
        json!(text(cj, "/spec/schedule")),
        json!(opt_text(cj, "/spec/timeZone").unwrap_or("<none>")),
        json!(bool_ptr(cj.pointer("/spec/suspend"))),
        json!(list(cj, "/status/active").len()),
        json!(last_schedule),
        json!(age(cj, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(
            cj.pointer("/spec/jobTemplate/spec/selector")
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::cells;
    use super::super::test_support::{names, now};
    use serde_json::{Value, json};

    fn job(spec: Value, status: Value) -> Value {
        let mut spec = spec;
        spec["template"] = json!({"spec": {"containers": [{"name": "pi", "image": "perl:5.34"}]}});
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "abc"}});
        json!({"metadata": {"name": "pi", "creationTimestamp": "2025-06-01T11:00:00Z"}, "spec": spec, "status": status})
    }

    #[test]
    fn job_rows_by_state() {
        assert_eq!(
            names("batch", "jobs"),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let done = job(
            json!({"completions": 1, "parallelism": 1}),
            json!({"succeeded": 1, "startTime": "2025-06-01T11:00:00Z", "completionTime": "2025-06-01T11:00:42Z",
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(
            cells("batch", "jobs", &done, now()),
            vec![
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("42s"),
                json!("60m"),
                json!("pi"),
                json!("perl:5.34"),
                json!("batch.kubernetes.io/controller-uid=abc")
            ]
        );
        let running = job(
            json!({"parallelism": 3}),
            json!({"succeeded": 0, "startTime": "2025-06-01T11:57:00Z"}),
        );
        assert_eq!(
            cells("batch", "jobs", &running, now())[1..4],
            [json!("Running"), json!("0/1 of 3"), json!("3m")]
        );
        let failed = job(
            json!({"completions": 5}),
            json!({"succeeded": 2, "conditions": [
            {"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]}),
        );
        assert_eq!(
            cells("batch", "jobs", &failed, now())[1..4],
            [json!("Failed"), json!("2/5"), json!("")]
        );
        let suspended = job(
            json!({}),
            json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
        );
        assert_eq!(
            cells("batch", "jobs", &suspended, now())[1],
            json!("Suspended")
        );
        let mut terminating = job(json!({}), json!({}));
        terminating["metadata"]["deletionTimestamp"] = json!("2025-06-01T11:59:00Z");
        assert_eq!(
            cells("batch", "jobs", &terminating, now())[1],
            json!("Terminating")
        );
    }

    #[test]
    fn cron_job_row() {
        assert_eq!(
            names("batch", "cronjobs"),
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let cj = json!({"metadata": {"name": "hello", "creationTimestamp": "2025-05-31T12:00:00Z"},
            "spec": {"schedule": "*/5 * * * *", "suspend": false, "jobTemplate": {"spec": {"template": {"spec": {
                "containers": [{"name": "hello", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": "2025-06-01T11:55:00Z"}});
        assert_eq!(
            cells("batch", "cronjobs", &cj, now()),
            vec![
                json!("hello"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("5m"),
                json!("24h"),
                json!("hello"),
                json!("busybox"),
                json!("<none>")
            ]
        );
        let never = json!({"metadata": {"name": "n"}, "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
        let row = cells("batch", "cronjobs", &never, now());
        assert_eq!(
            row[2..6],
            [
                json!("Etc/UTC"),
                json!("<unset>"),
                json!(0),
                json!("<none>")
            ]
        );
    }
}
