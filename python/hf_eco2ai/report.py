"""The end-of-run summary: kWh, CO2, samples/kWh and cost from the probe's totals, and
the carbon report (the JSON an accounting API receives) made from it."""

import datetime
import time

from . import carbon

REPORT_SCHEMA = "hf-eco2ai/carbon-report/v1"


def rfc3339(unix_s):
    """`unix_s` as an RFC 3339 UTC timestamp with milliseconds, e.g. 2026-12-03T13:49:28.123Z."""
    dt = datetime.datetime.fromtimestamp(float(unix_s), tz=datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _span_unix_s(meta, duration_s):
    """(start, end) of the run in Unix seconds: from meta.json's monotonic span and its
    clock offset when the probe wrote them, else ending now."""
    offset = meta.get("mono_to_unix_ns")
    start_ns, end_ns = meta.get("start_ns"), meta.get("end_ns")
    if isinstance(offset, int) and isinstance(start_ns, int):
        start = (start_ns + offset) / 1e9
        end = (end_ns + offset) / 1e9 if isinstance(end_ns, int) else start + duration_s
        return start, end
    end = time.time()
    return end - duration_s, end


def summarise(session, config, samples=None, gpu_count=None, steps=None):
    """The run's summary. `samples` and `steps`: this process's training steps (steps in
    a named phase, such as eval, left out), else the probe's totals (live.json; its
    samples count training steps only, its steps every marked step)."""
    live = session.live() or {}
    energy_j = float(live.get("energy_j", 0.0))
    duration_s = float(live.get("elapsed_s", 0.0))
    elapsed_h = duration_s / 3600.0
    gpus = gpu_count if gpu_count is not None else len(session.meta.get("gpus", []))
    fp = carbon.footprint(
        energy_j,
        config.intensity_g_per_kwh(),
        pue=config.pue,
        price_per_kwh=config.price_per_kwh,
        gpu_hours=gpus * elapsed_h,
        gpu_hour_usd=config.gpu_hour_usd,
    )
    samples = samples if samples is not None else int(live.get("samples", 0))
    start_s, end_s = _span_unix_s(session.meta, duration_s)
    summary = {
        "run_id": session.meta.get("run_id"),
        "project_name": config.project_name,
        "model_name": config.model_name,
        "host": session.meta.get("host"),
        "run_dir": session.run_dir,
        "start": rfc3339(start_s),
        "end": rfc3339(end_s),
        "duration_s": duration_s,
        "energy_kwh": fp["energy_kwh"],
        "gpu_energy_kwh": float(live.get("gpu_energy_j", 0.0)) / carbon.J_PER_KWH * config.pue,
        "cpu_energy_kwh": float(live.get("cpu_energy_j", 0.0)) / carbon.J_PER_KWH * config.pue,
        "pue": config.pue,
        "co2_kg": fp["co2_kg"],
        "grid_intensity_g_per_kwh": config.intensity_g_per_kwh(),
        "grid_intensity_source": config.intensity_source(),
        "steps": int(steps if steps is not None else live.get("steps", 0)),
        "samples": samples,
        "samples_per_kwh": samples / fp["energy_kwh"] if fp["energy_kwh"] > 0 else None,
        "cost": {
            "energy_usd": fp["energy_usd"],
            "compute_usd": fp["compute_usd"],
            "compute_source": "gpu_hour_usd" if fp["compute_usd"] is not None else None,
            "total_usd": None,
        },
        "sources": sorted(live.get("devices_j", {}).keys()),
    }
    set_compute_cost(summary, fp["compute_usd"], summary["cost"]["compute_source"])
    return summary


def set_compute_cost(summary, compute_usd, source):
    """Puts a compute cost (and where it came from) into the summary's cost breakdown
    and recomputes the total."""
    cost = summary["cost"]
    cost["compute_usd"] = compute_usd
    cost["compute_source"] = source if compute_usd is not None else None
    parts = [c for c in (cost["energy_usd"], cost["compute_usd"]) if c is not None]
    cost["total_usd"] = sum(parts) if parts else None


def carbon_report(summary):
    """The run's carbon report as sent to an accounting API (schema in README.md and
    integrations.CarbonAccountingAPI)."""
    cost = summary["cost"]
    return {
        "schema": REPORT_SCHEMA,
        "run_id": summary.get("run_id"),
        "project": summary["project_name"],
        "model": summary.get("model_name"),
        "host": summary.get("host"),
        "start": summary.get("start"),
        "end": summary.get("end"),
        "duration_s": summary["duration_s"],
        "energy_kwh": summary["energy_kwh"],
        "gpu_energy_kwh": summary.get("gpu_energy_kwh"),
        "cpu_energy_kwh": summary.get("cpu_energy_kwh"),
        "pue": summary.get("pue"),
        "co2_kg": summary["co2_kg"],
        "intensity_g_per_kwh": summary.get("grid_intensity_g_per_kwh"),
        "intensity_source": summary.get("grid_intensity_source"),
        "cost": {
            "currency": "USD",
            "energy": cost.get("energy_usd"),
            "compute": cost.get("compute_usd"),
            "compute_source": cost.get("compute_source"),
            "total": cost.get("total_usd"),
        },
        "steps": summary["steps"],
        "samples": summary["samples"],
        "samples_per_kwh": summary["samples_per_kwh"],
        "budget_exceeded_at_step": summary.get("budget_exceeded_at_step"),
    }


def co2_so_far_kg(session, config):
    """CO2 of the run so far from the probe's live totals, or None if unknown yet."""
    live = session.live()
    intensity = config.intensity_g_per_kwh()
    if live is None or intensity is None:
        return None
    return carbon.footprint(float(live.get("energy_j", 0.0)), intensity, pue=config.pue)["co2_kg"]


def one_line(summary):
    co2 = summary["co2_kg"]
    spk = summary["samples_per_kwh"]
    cost = summary["cost"]
    return (
        f"hf-eco2ai: {summary['energy_kwh']:.6f} kWh, "
        + (f"{co2:.6f} kg CO2, " if co2 is not None else "CO2 unknown (no country/region), ")
        + (f"{spk:,.0f} samples/kWh, " if spk is not None else "")
        + _cost_text(cost)
        + f"{summary['steps']} steps; run {summary['run_dir']}"
    )


def _cost_text(cost):
    if cost["total_usd"] is None:
        return ""
    parts = []
    if cost["energy_usd"] is not None:
        parts.append(f"energy ${cost['energy_usd']:.4f}")
    if cost["compute_usd"] is not None:
        parts.append(f"compute ${cost['compute_usd']:.4f} ({cost['compute_source']})")
    return f"${cost['total_usd']:.4f} (" + ", ".join(parts) + "), "
