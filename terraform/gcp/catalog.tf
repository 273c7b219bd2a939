# The catalog: Cloud SQL PostgreSQL with only a private IP, TLS required.
#
# Its password is an ephemeral value: Terraform generates it during apply
# and hands it to two write-only arguments (the Cloud SQL user and a Secret
# Manager version), so neither the plan nor the state holds it. Agents read
# it from Secret Manager at start. Bump var.db_password_version to rotate.

resource "google_compute_global_address" "private_service_access" {
  count = var.create_private_service_access ? 1 : 0

  project       = var.project_id
  name          = "${var.name}-private-services"
  purpose       = "VPC_PEERING"
  address_type  = "INTERNAL"
  prefix_length = var.private_service_access_prefix_length
  network       = data.google_compute_network.this.id
}

resource "google_service_networking_connection" "private_service_access" {
  count = var.create_private_service_access ? 1 : 0

  network                 = data.google_compute_network.this.id
  service                 = "servicenetworking.googleapis.com"
  reserved_peering_ranges = [google_compute_global_address.private_service_access[0].name]
}

resource "google_sql_database_instance" "catalog" {
  project             = var.project_id
  name                = "${var.name}-catalog"
  region              = var.region
  database_version    = var.db_version
  encryption_key_name = var.kms_key_name
  deletion_protection = var.db_deletion_protection

  settings {
    tier                        = var.db_tier
    edition                     = "ENTERPRISE"
    availability_type           = var.db_availability_type
    disk_type                   = "PD_SSD"
    disk_size                   = var.db_disk_size_gb
    disk_autoresize             = true
    deletion_protection_enabled = var.db_deletion_protection
    user_labels                 = local.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = data.google_compute_network.this.id
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      start_time                     = "03:00"
      point_in_time_recovery_enabled = true
      transaction_log_retention_days = 7
      backup_retention_settings {
        retained_backups = var.db_backup_count
      }
    }

    maintenance_window {
      day          = 7
      hour         = 4
      update_track = "stable"
    }

    insights_config {
      query_insights_enabled = true
    }

    # Catalog statements take milliseconds; log the ones that do not.
    database_flags {
      name  = "log_min_duration_statement"
      value = "500"
    }
  }

  depends_on = [
    google_service_networking_connection.private_service_access,
    google_kms_crypto_key_iam_member.service_agents, # a customer-managed key (kms.tf)
  ]
}

resource "google_sql_database" "catalog" {
  project  = var.project_id
  name     = var.db_name
  instance = google_sql_database_instance.catalog.name
}

ephemeral "random_password" "catalog" {
  length = 32
  # Letters and digits only: no tool or URL it passes through needs it
  # escaped (the agents read it from a file, --catalog.password-file).
  special = false
}

resource "google_sql_user" "catalog" {
  project             = var.project_id
  name                = var.db_username
  instance            = google_sql_database_instance.catalog.name
  password_wo         = ephemeral.random_password.catalog.result
  password_wo_version = var.db_password_version

  # PostgreSQL refuses to drop a user that owns the catalog's tables.
  deletion_policy = "ABANDON"
}

resource "google_secret_manager_secret" "catalog_password" {
  project   = var.project_id
  secret_id = "${var.name}-catalog-password"
  labels    = local.labels

  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "catalog_password" {
  secret                 = google_secret_manager_secret.catalog_password.id
  secret_data_wo         = ephemeral.random_password.catalog.result
  secret_data_wo_version = var.db_password_version
}
