# A customer-managed key (var.kms_key_name) is used by Google's service
# agents, not by the agents' service account: Cloud Storage encrypts the
# bucket's objects, Cloud SQL the catalog's disk and Compute Engine the
# agents' boot disks, each as its project's service agent. Without the key
# role each of them fails: bucket creation, catalog creation, every
# instance the group starts.

data "google_project" "this" {
  count      = var.kms_key_name == null ? 0 : 1
  project_id = var.project_id
}

# Reading it also creates the Cloud Storage service agent if need be.
data "google_storage_project_service_account" "this" {
  count   = var.kms_key_name == null ? 0 : 1
  project = var.project_id
}

# Cloud SQL's service agent exists only once asked for (this, or the first
# CMEK instance made in the console); only the beta provider can ask.
resource "google_project_service_identity" "sql" {
  count    = var.kms_key_name == null ? 0 : 1
  provider = google-beta
  project  = var.project_id
  service  = "sqladmin.googleapis.com"
}

locals {
  kms_service_agents = var.kms_key_name == null ? {} : {
    compute = "serviceAccount:service-${data.google_project.this[0].number}@compute-system.iam.gserviceaccount.com"
    storage = "serviceAccount:${data.google_storage_project_service_account.this[0].email_address}"
    sql     = "serviceAccount:${google_project_service_identity.sql[0].email}"
  }
}

resource "google_kms_crypto_key_iam_member" "service_agents" {
  for_each      = local.kms_service_agents
  crypto_key_id = var.kms_key_name
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = each.value
}
