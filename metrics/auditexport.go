package metrics

import (
	"github.com/hsmkms/hsmkms/auditexport"
	"github.com/prometheus/client_golang/prometheus"
)

// AuditExportSource is what the audit export collector reads
// (*auditexport.Exporter).
type AuditExportSource interface {
	Stats() auditexport.Stats
}

var _ AuditExportSource = (*auditexport.Exporter)(nil)

// WatchAuditExport exports the audit export's queue, lag, drops and write
// errors (KMS_AUDIT_SINK).
func (m *Metrics) WatchAuditExport(src AuditExportSource) {
	m.reg.MustRegister(newAuditExportCollector(src))
}

type auditExportCollector struct {
	src                              AuditExportSource
	queued, lag, dropped, errs, last *prometheus.Desc
}

func newAuditExportCollector(src AuditExportSource) *auditExportCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "audit_export", name), help, nil, nil)
	}
	return &auditExportCollector{src: src,
		queued:  d("queue_depth", "Audit records read from the chain and waiting for the export's sink (at most KMS_AUDIT_SINK_QUEUE)."),
		lag:     d("lag_records", "Audit records durable in the database but not yet written to the export's sink (with block, requests wait once it reaches KMS_AUDIT_SINK_QUEUE)."),
		dropped: d("dropped_total", "Audit records left out of the export (drop policy): the sink refused them or the queue was full. They stay in the database and GET /v1/audit."),
		errs:    d("write_errors_total", "Failed writes to the audit export's sink."),
		last:    d("last_seq", "The seq of the last audit record written to the export's sink."),
	}
}

// Describe implements prometheus.Collector.
func (c *auditExportCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.queued
	ch <- c.lag
	ch <- c.dropped
	ch <- c.errs
	ch <- c.last
}

// Collect implements prometheus.Collector.
func (c *auditExportCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(st.Queued))
	ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(st.Lag))
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(st.Dropped))
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(st.WriteErrors))
	ch <- prometheus.MustNewConstMetric(c.last, prometheus.GaugeValue, float64(st.LastSeq))
}
