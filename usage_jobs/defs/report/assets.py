"""The published report site (`site_output/`)."""


from pathlib import Path

import dagster as dg

from usage_jobs.defs.billing.assets import billing_chargeback, billing_reconciliation, commit_status
from usage_jobs.defs.gateway.assets import daily_usage
from usage_jobs.defs.inventory.assets import key_inventory
from usage_jobs.defs.keys.assets import key_anomalies
from usage_jobs.defs.report.build import build_site
from usage_jobs.defs.resources import WAREHOUSE_POOL, SiteResource, WarehouseResource


@dg.asset(deps=[daily_usage, key_anomalies, key_inventory, commit_status, billing_reconciliation, billing_chargeback], pool=WAREHOUSE_POOL,
          group_name="report", kinds={"html"})
def usage_report_site(context: dg.AssetExecutionContext, warehouse: WarehouseResource, site: SiteResource):
    """The static report: `index.html` on the last 7 days, a page per period, charts with their
    numbers beside them, and CSV/JSON exports with a manifest. Built in a scratch folder and
    swapped in, so a failed build leaves the published site as it was.

    Materialised in a run of its own (`site_job`, `usage-report site`), after the run that
    refreshes `key_inventory` and `commit_status`, whatever its outcome: the site shows what the
    warehouse holds, and its pages state a source that could not be refreshed."""
    with warehouse.connect():
        pass  # the file created or brought to the current schema: the build reads it read-only, its period workers beside it
    with warehouse.connect(read_only=True) as conn:
        result = build_site(conn, Path(site.site_dir), timezone=site.timezone, billing_configured=site.billing_configured,
                            billing_timezone=site.billing_timezone, hide_user_agent_tags=site.hide_user_agent_tags, chromium=site.chromium,
                            progress=lambda done, total, slug: context.log.debug(f"period {done}/{total} rendered: {slug}"))
    for note in result.pdf_notes:  # no Chromium (said once), or a period whose PDF failed
        context.log.warning(note)
    return dg.MaterializeResult(metadata={
        "pages": result.pages, "charts": result.charts, "export files": result.export_files, "periods": result.periods,
        "periods rendered": result.rendered_periods, "periods unchanged (copied)": result.reused_periods,
        "pdfs": result.pdfs, "pdf notes": "\n".join(result.pdf_notes),
        "index": dg.MetadataValue.path(str(Path(site.site_dir).resolve() / "index.html")),
    })
