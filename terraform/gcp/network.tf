# Firewall rules and the bootstrap load balancer.
#
# Clients bootstrap through the load balancer, then connect straight to the
# agent each partition's metadata names (its advertised internal IP), so the
# agents' Kafka port is open to the client CIDRs. Rules target the agents'
# service account rather than a network tag, which any VM could claim.

locals {
  # Google's health checkers (and, for external passthrough load balancers,
  # its legacy ones).
  health_check_ranges = concat(
    ["35.191.0.0/16", "130.211.0.0/22"],
    var.public_load_balancer ? ["209.85.152.0/22", "209.85.204.0/22"] : [],
  )
  lb_scheme = var.public_load_balancer ? "EXTERNAL" : "INTERNAL"
}

resource "google_compute_firewall" "kafka_clients" {
  project                 = var.project_id
  name                    = "${var.name}-kafka-clients"
  network                 = data.google_compute_network.this.self_link
  description             = "Kafka from Floe clients"
  direction               = "INGRESS"
  source_ranges           = var.client_cidrs
  target_service_accounts = [google_service_account.agent.email]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.kafka_port)]
  }
}

resource "google_compute_firewall" "admin" {
  count = length(var.admin_cidrs) > 0 ? 1 : 0

  project                 = var.project_id
  name                    = "${var.name}-admin"
  network                 = data.google_compute_network.this.self_link
  description             = "Floe admin port (metrics, health, pprof) from operators"
  direction               = "INGRESS"
  source_ranges           = var.admin_cidrs
  target_service_accounts = [google_service_account.agent.email]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.admin_port)]
  }
}

resource "google_compute_firewall" "health_checks" {
  project                 = var.project_id
  name                    = "${var.name}-health-checks"
  network                 = data.google_compute_network.this.self_link
  description             = "Load balancer and autohealing health checks to Floe agents"
  direction               = "INGRESS"
  source_ranges           = local.health_check_ranges
  target_service_accounts = [google_service_account.agent.email]

  allow {
    protocol = "tcp"
    ports    = [tostring(var.kafka_port), tostring(var.admin_port)]
  }
}

# /healthz (the agent process and its WAL are fine), not /readyz: a catalog
# outage must not make autohealing recreate every agent.
resource "google_compute_region_health_check" "agent" {
  project             = var.project_id
  name                = "${var.name}-agent"
  region              = var.region
  check_interval_sec  = 10
  timeout_sec         = 5
  healthy_threshold   = 2
  unhealthy_threshold = 3

  http_health_check {
    port         = var.admin_port
    request_path = "/healthz"
  }
}

resource "google_compute_region_backend_service" "kafka" {
  project                         = var.project_id
  name                            = "${var.name}-kafka"
  region                          = var.region
  protocol                        = "TCP"
  load_balancing_scheme           = local.lb_scheme
  health_checks                   = [google_compute_region_health_check.agent.id]
  connection_draining_timeout_sec = 30

  backend {
    group          = google_compute_region_instance_group_manager.agents.instance_group
    balancing_mode = "CONNECTION"
  }
}

resource "google_compute_forwarding_rule" "kafka" {
  project               = var.project_id
  name                  = "${var.name}-kafka"
  region                = var.region
  load_balancing_scheme = local.lb_scheme
  backend_service       = google_compute_region_backend_service.kafka.id
  ip_protocol           = "TCP"
  ports                 = [tostring(var.kafka_port)]
  network               = var.public_load_balancer ? null : data.google_compute_network.this.self_link
  subnetwork            = var.public_load_balancer ? null : data.google_compute_subnetwork.this.self_link
  labels                = local.labels
}
