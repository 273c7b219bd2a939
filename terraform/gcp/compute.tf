# The agents: an instance template on Container-Optimized OS whose startup
# script runs the Floe container, a regional managed instance group spread
# evenly over the zones, and a CPU autoscaler. A new image or agent setting
# makes a new template, which the group rolls out proactively (surge first,
# then the old agent drains: SIGTERM flushes and commits its WAL).

resource "google_compute_instance_template" "agent" {
  project      = var.project_id
  name_prefix  = "${var.name}-agent-"
  description  = "Floe agent (${local.cluster})"
  machine_type = var.machine_type
  labels       = local.labels

  disk {
    source_image = var.source_image
    boot         = true
    auto_delete  = true
    disk_type    = "pd-balanced"
    disk_size_gb = var.boot_disk_size_gb

    dynamic "disk_encryption_key" {
      for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
      content {
        kms_key_self_link = disk_encryption_key.value
      }
    }
  }

  # No external IP.
  network_interface {
    subnetwork = data.google_compute_subnetwork.this.self_link
  }

  service_account {
    email  = google_service_account.agent.email
    scopes = ["cloud-platform"]
  }

  shielded_instance_config {
    enable_secure_boot          = true
    enable_vtpm                 = true
    enable_integrity_monitoring = true
  }

  metadata = {
    startup-script = templatefile("${path.module}/templates/startup.sh.tftpl", {
      image              = var.image
      bucket_url         = local.bucket_url
      cluster            = local.cluster
      kafka_port         = var.kafka_port
      admin_port         = var.admin_port
      flush_interval     = var.flush_interval
      flush_bytes        = var.flush_bytes
      auto_create_topics = var.auto_create_topics
      default_partitions = var.default_partitions
      log_level          = var.log_level
      password_secret    = google_secret_manager_secret.catalog_password.id
      db_host            = google_sql_database_instance.catalog.private_ip_address
      db_name            = var.db_name
      db_user            = var.db_username
    })
    # Part of the template so that a password rotation rolls the group.
    floe-catalog-password-version = tostring(var.db_password_version)
    google-logging-enabled        = "true"
    enable-oslogin                = "TRUE"
    block-project-ssh-keys        = "TRUE"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_compute_region_instance_group_manager" "agents" {
  project            = var.project_id
  name               = "${var.name}-agents"
  region             = var.region
  base_instance_name = "${var.name}-agent"

  # Set when the group is created and kept (lifecycle below): changing a
  # regional group's zones replaces it, deleting every agent before the new
  # group (of the same name) can start one.
  distribution_policy_zones        = local.zones
  distribution_policy_target_shape = "EVEN"

  version {
    instance_template = google_compute_instance_template.agent.self_link_unique
  }

  named_port {
    name = "kafka"
    port = var.kafka_port
  }

  auto_healing_policies {
    health_check      = google_compute_region_health_check.agent.id
    initial_delay_sec = 180
  }

  # Replacements come up before the old agents go. A regional group's surge
  # must be 0 or at least its number of zones, so it replaces one agent per
  # zone at a time.
  update_policy {
    type                         = "PROACTIVE"
    minimal_action               = "REPLACE"
    replacement_method           = "SUBSTITUTE"
    instance_redistribution_type = "PROACTIVE"
    max_surge_fixed              = length(local.zones) # the group's zones, or the check below warns
    max_unavailable_fixed        = 0
  }

  lifecycle {
    # A zone list that changed under the group (a region gaining a zone,
    # var.zones edited) must not delete every agent: the check below warns
    # instead. Replace the group deliberately to change its zones.
    ignore_changes = [distribution_policy_zones]
  }

  # The secret version must exist before an agent reads it.
  depends_on = [
    google_secret_manager_secret_version.catalog_password,
    google_secret_manager_secret_iam_member.agent_catalog_password,
    google_storage_bucket_iam_member.agent_objects,
    google_storage_bucket_iam_member.agent_bucket,
    google_sql_user.catalog,
    google_sql_database.catalog,
    google_kms_crypto_key_iam_member.service_agents, # boot disks with a customer-managed key (kms.tf)
  ]
}

check "agent_zones" {
  assert {
    condition     = toset(google_compute_region_instance_group_manager.agents.distribution_policy_zones) == toset(local.zones)
    error_message = "The agents' instance group keeps the zones it was created in (${join(", ", google_compute_region_instance_group_manager.agents.distribution_policy_zones)}), but var.zones or the region's zones are now ${join(", ", local.zones)}. Set zones to the group's to silence this (fewer zones than the group's also fail the apply: the update's surge follows zones and must be 0 or at least the group's zone count); changing them means replacing the group, which deletes every agent first (terraform/README.md)."
  }
}

resource "google_compute_region_autoscaler" "agents" {
  project = var.project_id
  name    = "${var.name}-agents"
  region  = var.region
  target  = google_compute_region_instance_group_manager.agents.id

  autoscaling_policy {
    min_replicas    = var.min_replicas
    max_replicas    = var.max_replicas
    cooldown_period = 120

    cpu_utilization {
      target = var.cpu_target
    }

    # Scale in one agent per 10 minutes: each drain moves its partitions'
    # leadership (and cached tails) elsewhere.
    scale_in_control {
      time_window_sec = 600
      max_scaled_in_replicas {
        fixed = 1
      }
    }
  }
}
