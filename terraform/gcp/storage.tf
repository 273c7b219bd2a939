# The segment bucket. Floe writes each object once under a unique key and
# deletes it only after compaction, so versioning (and soft delete, by
# default) would only keep deleted segments and their cost around.

resource "random_id" "bucket" {
  count       = var.bucket_name == null ? 1 : 0
  byte_length = 4
}

resource "google_storage_bucket" "segments" {
  project       = var.project_id
  name          = local.bucket_name
  location      = coalesce(var.bucket_location, var.region)
  storage_class = "STANDARD"
  force_destroy = var.bucket_force_destroy
  labels        = local.labels

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  versioning {
    enabled = false
  }

  soft_delete_policy {
    retention_duration_seconds = var.bucket_soft_delete_seconds
  }

  # An agent killed during a multipart upload leaves its parts behind; they
  # are billed until aborted. No acknowledged record is ever in one.
  lifecycle_rule {
    action {
      type = "AbortIncompleteMultipartUpload"
    }
    condition {
      age = 1
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  # A customer-managed default key: Cloud Storage checks it can use it (kms.tf).
  depends_on = [google_kms_crypto_key_iam_member.service_agents]
}
