//! The Windows service: installing, removing, starting and stopping it through the
//! service control manager (SCM), and running under it (`fleet-agent service run`), where
//! the manager's stop and shutdown controls join the agent's one shutdown path.

use std::ffi::{OsStr, OsString};
use std::sync::OnceLock;
use std::time::Duration;
use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

/// The service's key name (`sc query FleetAgent`); the MSI installs the same name.
pub const SERVICE_NAME: &str = "FleetAgent";
/// The name shown in the Services console.
pub const DISPLAY_NAME: &str = "Fleet Agent";
const DESCRIPTION: &str = "Discovers and polls network printers and reports their counters, supplies and alerts to the cloud.";

/// How long the SCM is told a stop may take.
const STOP_HINT: Duration = crate::platform::STOP_BOUND;

static STATUS: OnceLock<ServiceStatusHandle> = OnceLock::new();
type Main = Box<dyn Fn() -> i32 + Send + Sync>;
static MAIN: OnceLock<Main> = OnceLock::new();

/// Whether this process runs as the service (under the SCM).
pub fn running() -> bool {
    STATUS.get().is_some()
}

/// Hands the process to the SCM and runs `main` as the service (blocks until it stops).
/// `main` runs the agent and returns its exit code.
///
/// # Errors
/// When the process was not started by the SCM (run from a console instead).
pub fn run(main: impl Fn() -> i32 + Send + Sync + 'static) -> Result<(), String> {
    MAIN.set(Box::new(main)).ok();
    service_dispatcher::start(SERVICE_NAME, ffi_service_main).map_err(|e| {
        format!(
            "not started by the Windows service manager ({e}); use `fleet-agent service start`, or `fleet-agent run` in a console"
        )
    })
}

define_windows_service!(ffi_service_main, service_main);

fn service_main(_arguments: Vec<OsString>) {
    let handler = |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            set(ServiceState::StopPending, 0, STOP_HINT);
            super::request_stop();
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let Ok(handle) = service_control_handler::register(SERVICE_NAME, handler) else {
        return;
    };
    STATUS.set(handle).ok();
    set(ServiceState::StartPending, 0, Duration::from_secs(30));
    let code = MAIN.get().map_or(1, |main| main());
    set(ServiceState::Stopped, code, Duration::ZERO);
}

fn set(state: ServiceState, code: i32, wait_hint: Duration) {
    let Some(handle) = STATUS.get() else { return };
    let controls_accepted = if state == ServiceState::Running {
        ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
    } else {
        ServiceControlAccept::empty()
    };
    // A crash's status (an NTSTATUS such as 0xC0000005) is negative as an i32: still a
    // failure, so the recovery actions apply.
    let exit_code = match code {
        0 => ServiceExitCode::Win32(0),
        c => ServiceExitCode::ServiceSpecific(u32::from_ne_bytes(c.to_ne_bytes())),
    };
    handle
        .set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted,
            exit_code,
            checkpoint: 0,
            wait_hint,
            process_id: None,
        })
        .ok();
}

/// The agent's lifecycle as the SCM sees it (nothing happens outside the service).
pub(super) fn notify(state: super::ServiceState<'_>) {
    match state {
        super::ServiceState::Ready(_) => set(ServiceState::Running, 0, Duration::ZERO),
        super::ServiceState::Stopping => set(ServiceState::StopPending, 0, STOP_HINT),
        super::ServiceState::Reloading | super::ServiceState::Alive => {}
    }
}

fn explain(what: &str, e: windows_service::Error) -> String {
    let denied = matches!(&e, windows_service::Error::Winapi(io) if io.raw_os_error() == Some(5));
    match &e {
        _ if denied => {
            format!(
                "{what}: access denied; run this from an elevated prompt (Run as administrator)"
            )
        }
        // The crate's own text ("IO error in winapi call") hides which error it was.
        windows_service::Error::Winapi(io) => format!("{what}: {io}"),
        _ => format!("{what}: {e}"),
    }
}

fn manager(access: ServiceManagerAccess) -> Result<ServiceManager, String> {
    ServiceManager::local_computer(None::<&str>, access)
        .map_err(|e| explain("cannot reach the service manager", e))
}

/// Installs the service (automatic start as LocalSystem, restarted after a failure),
/// running this executable with `arguments` (`service run --config ...`). Returns what
/// could not be set once the service exists (its recovery actions: Wine's service
/// manager refuses them), for the caller to warn about: the service itself works.
///
/// # Errors
/// Access denied (not elevated), an existing service of that name, and other SCM errors.
pub fn install(arguments: Vec<OsString>) -> Result<Option<String>, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let m = manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
    let info = ServiceInfo {
        name: SERVICE_NAME.into(),
        display_name: DISPLAY_NAME.into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe,
        launch_arguments: arguments,
        dependencies: vec![],
        account_name: None,
        account_password: None,
    };
    let service = m
        .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
        .map_err(|e| explain(&format!("cannot install the service {SERVICE_NAME}"), e))?;
    service
        .set_description(DESCRIPTION)
        .map_err(|e| explain("cannot set the description", e))?;
    Ok(set_recovery(&service).err())
}

/// Sets the installed service's recovery actions (the MSI runs this after installing it,
/// since its ServiceInstall table cannot say them).
///
/// # Errors
/// Not installed, access denied.
pub fn recovery() -> Result<(), String> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let service = m
        .open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG)
        .map_err(|e| explain(&format!("cannot open the service {SERVICE_NAME}"), e))?;
    set_recovery(&service)
}

fn set_recovery(service: &windows_service::service::Service) -> Result<(), String> {
    // Restart after 10 s, then 60 s; the failure count resets after a day.
    service
        .update_failure_actions(ServiceFailureActions {
            reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
            reboot_msg: None,
            command: None,
            actions: Some(vec![
                ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: Duration::from_secs(10),
                },
                ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay: Duration::from_secs(60),
                },
            ]),
        })
        .map_err(|e| explain("cannot set the failure actions", e))?;
    // A non-zero exit (for instance a configuration error) counts as a failure too.
    service
        .set_failure_actions_on_non_crash_failures(true)
        .map_err(|e| explain("cannot set the failure actions", e))?;
    Ok(())
}

// The service commands are short blocking CLI calls, outside the agent's tokio logic.
#[allow(clippy::disallowed_types, clippy::disallowed_methods)]
fn wait_for(
    service: &windows_service::service::Service,
    want: ServiceState,
    limit: Duration,
) -> Result<ServiceState, String> {
    let start = std::time::Instant::now();
    loop {
        let now = service
            .query_status()
            .map_err(|e| explain("cannot query the service", e))?
            .current_state;
        if now == want || now == ServiceState::Stopped || start.elapsed() > limit {
            return Ok(now);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Starts the service and waits until it runs.
///
/// # Errors
/// Not installed, access denied, or the service stopped while starting (its log says why).
pub fn start() -> Result<(), String> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let service = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::START | ServiceAccess::QUERY_STATUS,
        )
        .map_err(|e| explain(&format!("cannot open the service {SERVICE_NAME}"), e))?;
    service
        .start::<&OsStr>(&[])
        .map_err(|e| explain("cannot start the service", e))?;
    match wait_for(&service, ServiceState::Running, Duration::from_secs(60))? {
        ServiceState::Running => Ok(()),
        other => Err(format!(
            "the service is {other:?} after start; see its log under %ProgramData%\\FleetAgent\\logs"
        )),
    }
}

/// Stops the service (the agent finishes its tasks first) and waits until it has.
///
/// # Errors
/// Not installed, access denied, or still running after the stop hint.
pub fn stop() -> Result<(), String> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let service = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::STOP | ServiceAccess::QUERY_STATUS,
        )
        .map_err(|e| explain(&format!("cannot open the service {SERVICE_NAME}"), e))?;
    stop_and_wait(&service)
}

fn stop_and_wait(service: &windows_service::service::Service) -> Result<(), String> {
    let now = service
        .query_status()
        .map_err(|e| explain("cannot query the service", e))?
        .current_state;
    if now == ServiceState::Stopped {
        return Ok(());
    }
    service
        .stop()
        .map_err(|e| explain("cannot stop the service", e))?;
    match wait_for(service, ServiceState::Stopped, STOP_HINT)? {
        ServiceState::Stopped => Ok(()),
        other => Err(format!("the service is still {other:?}")),
    }
}

/// Stops the service if it runs and removes it (the state directory stays).
///
/// # Errors
/// Not installed, access denied, or it would not stop.
pub fn uninstall() -> Result<(), String> {
    let m = manager(ServiceManagerAccess::CONNECT)?;
    let service = m
        .open_service(
            SERVICE_NAME,
            ServiceAccess::STOP | ServiceAccess::QUERY_STATUS | ServiceAccess::DELETE,
        )
        .map_err(|e| explain(&format!("cannot open the service {SERVICE_NAME}"), e))?;
    stop_and_wait(&service)?;
    service
        .delete()
        .map_err(|e| explain("cannot remove the service", e))
}
