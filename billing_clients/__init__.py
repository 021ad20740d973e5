"""The billing-client layer: the billing systems the project speaks (`systems`), the
official SDK clients (`sdk`), where a run points (`targets`), retries, pacing and the API's
clock (`retries`), and each system's error classification (`stripe`, `recurly`,
`chargebee`). The dlt sources and the write-backs both call billing APIs through it, so
neither reaches into the other.
"""
